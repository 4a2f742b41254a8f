"""Run the per-video unit (`pipeline.crops_from_video`) in worker processes, results in order.

Decoding, detection and alignment are CPU-bound and hold the GIL, so they run in processes:
each worker loads the face detector once (its initializer), then takes videos one at a time.
At most `window` videos are in flight, so memory is bounded however many videos there are;
the caller (the engine) scores crops in large batches in its own process while the workers
go on decoding the next videos.

Workers start with "spawn": the parent usually holds TensorFlow's thread pools, which a fork
would copy in a broken state. A worker that dies (a decoder crash, the OOM killer) breaks
the pool: the pool is restarted and the video at the head is retried alone; if that kills a
worker again it becomes an error row and the scan goes on.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator

from .. import pipeline

log = logging.getLogger(__name__)

_detector = None
_options = None


def _init(options: pipeline.SampleOptions) -> None:
    global _detector, _options
    # Ctrl-C goes to the whole process group: only the parent decides what happens then.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cv2
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own pool would oversubscribe
    from ..faces import FaceDetector
    _options = options
    _detector = FaceDetector(min_score=options.min_score)


def _work(path: str) -> pipeline.VideoCrops:
    # Test hook: a worker "crashes" (is killed) on paths containing this text, as a decoder
    # segfault or the OOM killer would do it. Unset in normal use.
    mark = os.environ.get("SCREENER_TEST_KILL_WORKER_ON")
    if mark and mark in path:
        os.kill(os.getpid(), signal.SIGKILL)
    return pipeline.crops_from_video(path, _options, _detector)


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def crashed(path: str) -> pipeline.VideoCrops:
    return pipeline.VideoCrops(path, error="the worker process died while reading this video "
                                           "(decoder crash or out of memory)")


class WorkerPool:
    """`imap`-like over videos: yields one VideoCrops per path, in the order of `paths`."""

    def __init__(self, options: pipeline.SampleOptions, workers: int, window: int | None = None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.options = options
        self.workers = workers
        self.window = window or 2 * workers + 2
        self._pool = None

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init,
                                             initargs=(self.options,))
        return self._pool

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        """Stop without waiting for videos in flight (interrupted, or the consumer left)."""
        self._restart()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.abort()
        self.close()

    def run(self, paths: Iterable[str]) -> Iterator[pipeline.VideoCrops]:
        todo = iter(paths)
        flight: deque = deque()

        def refill():
            while len(flight) < self.window:
                path = next(todo, None)
                if path is None:
                    return
                flight.append((path, self._start().submit(_work, path)))

        refill()
        while flight:
            path, future = flight.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                result = self._retry_alone(path)
                # Everything else in flight died with the pool: submit it again.
                again = [p for p, _ in flight]
                flight.clear()
                for p in again:
                    flight.append((p, self._start().submit(_work, p)))
            refill()
            yield result

    def _retry_alone(self, path: str) -> pipeline.VideoCrops:
        self._restart()
        try:
            return self._start().submit(_work, path).result()
        except BrokenProcessPool:
            log.warning("%s: worker process died twice on this video; reporting an error", path)
            self._restart()
            return crashed(path)
