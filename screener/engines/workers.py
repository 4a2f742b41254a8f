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

With a time limit per video (`timeout_s`), a worker that spends longer on one video ends
itself (a decoder stuck in native code cannot be interrupted any other way) after leaving the
video's path in a folder the pool reads: that video becomes an error row at once, without a
retry, and the others in flight are submitted again.

A worker whose parent dies without closing the pool (SIGKILL, the OOM killer) would wait for
work for ever: each worker holds a write end of the pool's call queue, so none ever reads its
end of file. Each worker therefore watches its parent and exits when it is gone.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterable, Iterator

from .. import pipeline
from ..logs import log_in_worker, worker_level
from ..options import EngineOptions
from .base import test_hooks

log = logging.getLogger(__name__)

_detector = None
_options = None
_timeout_s = None
_hung_dir = None


def _init(options: pipeline.SampleOptions, timeout_s: float | None = None,
          hung_dir: str | None = None, decode_threads: int | None = None,
          log_level: int = logging.WARNING) -> None:
    global _detector, _options, _timeout_s, _hung_dir
    _timeout_s, _hung_dir = timeout_s, hung_dir
    log_in_worker(log_level)  # escaped lines at the parent's level, never raw
    # Ctrl-C goes to the whole process group: only the parent decides what happens then.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="screener-parent-watch").start()
    import cv2
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own pool would oversubscribe
    from .. import video
    video.set_decode_threads(decode_threads)  # and FFmpeg's (see video.set_decode_threads)
    from ..faces import FaceDetector
    _options = options
    _detector = FaceDetector(min_score=options.min_score)


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    while os.getppid() == parent:  # re-parented (to init or a subreaper): the parent is gone
        time.sleep(every_s)
    os._exit(0)


def _work(path: str) -> pipeline.VideoCrops:
    timer = None
    if _timeout_s:
        timer = threading.Timer(_timeout_s, _give_up, (path,))
        timer.daemon = True
        timer.start()
    try:
        test_hooks(path)
        return pipeline.crops_from_video(path, _options, _detector)
    finally:
        if timer is not None:
            timer.cancel()


def _give_up(path: str) -> None:
    try:
        (Path(_hung_dir) / str(os.getpid())).write_bytes(os.fsencode(path))
    finally:
        os._exit(70)


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def crashed(path: str) -> pipeline.VideoCrops:
    return pipeline.VideoCrops(path, error="the worker process died while reading this video "
                                           "(decoder crash or out of memory)")


def timed_out(path: str, timeout_s: float) -> pipeline.VideoCrops:
    return pipeline.VideoCrops(path, error=f"reading this video took longer than the "
                                           f"{timeout_s:g} s limit (--video-timeout); stopped")


def _done(result) -> Future:
    f = Future()
    f.set_result(result)
    return f


def decode_threads(workers: int) -> int:
    """FFmpeg threads per worker: the cores the workers leave, shared out (1 with the default
    of a worker per core)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class WorkerPool:
    """`imap`-like over videos: yields one VideoCrops per path, in the order of `paths`."""

    def __init__(self, options: pipeline.SampleOptions, workers: int, window: int | None = None,
                 timeout_s: float | None = None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.options = options
        self.workers = workers
        self.window = window or 2 * workers + 2
        self.timeout_s = timeout_s
        self._pool = None
        self._hung_dir = tempfile.mkdtemp(prefix="screener-hung-") if timeout_s else None
        self._timed_out: set[str] = set()

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init,
                                             initargs=(self.options, self.timeout_s,
                                                       self._hung_dir, decode_threads(self.workers),
                                                       worker_level()))
        return self._pool

    def _submit(self, path: str) -> Future:
        if path in self._timed_out:  # never twice: it would hang again
            return _done(timed_out(path, self.timeout_s))
        return self._start().submit(_work, path)

    def _collect_hung(self) -> None:
        """Paths whose worker gave up on them (see _give_up)."""
        if self._hung_dir is None:
            return
        for f in Path(self._hung_dir).iterdir():
            self._timed_out.add(os.fsdecode(f.read_bytes()))
            f.unlink()

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._hung_dir is not None:
            shutil.rmtree(self._hung_dir, ignore_errors=True)
            self._hung_dir = None

    def abort(self) -> None:
        """Stop without waiting for videos in flight (interrupted, or the consumer left).

        The workers only read videos, so they are killed, and the pool's manager thread is
        joined: left running, it waits for the videos in flight at exit, and it may still be
        closing its wake-up pipe when the interpreter's exit hook writes to it (a CPython race,
        fixed in 3.12 by gh-125451: "OSError: [Errno 9] Bad file descriptor" on stderr). A
        worker killed halfway through sending its crops would leave the manager thread
        waiting for the rest of them; closing this process's copy of the results pipe's
        write end gives it end-of-file instead. (ProcessPoolExecutor has no public way to
        stop its workers before Python 3.14, hence the private attributes.)"""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        results = getattr(pool, "_result_queue", None)
        manager = getattr(pool, "_executor_manager_thread", None)
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()
        for process in processes:
            process.join()
        if results is not None:
            results._writer.close()
        if manager is not None:
            manager.join(timeout=60)

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
                flight.append((path, self._submit(path)))

        refill()
        while flight:
            path, future = flight.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                self._collect_hung()
                if path in self._timed_out:
                    self._restart()
                    result = timed_out(path, self.timeout_s)
                else:
                    result = self._retry_alone(path)
                # Everything else in flight that had not finished died with the pool: submit
                # it again.
                again = list(flight)
                flight.clear()
                for p, f in again:
                    finished = f.done() and not f.cancelled() and f.exception() is None
                    flight.append((p, f if finished else self._submit(p)))
            refill()
            yield result

    def _retry_alone(self, path: str) -> pipeline.VideoCrops:
        self._restart()
        try:
            return self._start().submit(_work, path).result()
        except BrokenProcessPool:
            self._restart()
            self._collect_hung()
            if path in self._timed_out:
                return timed_out(path, self.timeout_s)
            log.warning("%s: worker process died twice on this video; reporting an error", path)
            return crashed(path)


class VideoReader:
    """The reading stage of the local engine and of extract: VideoCrops per path, in input
    order, from worker processes (`options.workers`, default one per core) or from this
    process (`workers=0`, or a single video without a time limit: not worth starting
    processes for). The pool starts on first use and is kept for later calls until close()."""

    def __init__(self, sample: pipeline.SampleOptions, options: EngineOptions | None = None,
                 detector=None):
        options = options or EngineOptions()
        self.options = sample
        self.workers = default_workers() if options.workers is None else options.workers
        self.timeout_s = options.video_timeout_s
        self._detector = detector
        self._pool = None

    @property
    def detector(self):
        # One detector for the whole run: its model load is paid once, not per video.
        if self._detector is None:
            from ..faces import FaceDetector
            self._detector = FaceDetector(min_score=self.options.min_score)
        return self._detector

    def crops(self, path: str) -> pipeline.VideoCrops:
        """The per-video unit in this process, guarded: a bug on one file must not end the run."""
        try:
            return pipeline.crops_from_video(path, self.options, self.detector)
        except Exception as e:  # crops_from_video reports bad videos itself; this is a bug
            return pipeline.internal_error(path, e)

    def videos(self, paths: list[str]) -> Iterator[pipeline.VideoCrops]:
        alone = len(paths) <= 1 and self._pool is None and self.timeout_s is None
        if self.workers == 0 or alone:
            for path in paths:
                yield self.crops(path)
            return
        if self._pool is None:
            self._pool = WorkerPool(self.options, self.workers, timeout_s=self.timeout_s)
        try:
            yield from self._pool.run(paths)
        except BaseException:  # interrupted or abandoned: do not wait for videos in flight
            self._pool.abort()
            self._pool = None
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
