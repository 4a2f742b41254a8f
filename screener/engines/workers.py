"""Run the per-video unit (`pipeline.crops_from_video`) in worker processes, results in order.

Decoding, detection and alignment are CPU-bound and hold the GIL, so they run in processes
(`pool.ProcessPool`, one video at a time per worker): each worker loads the face detector once,
then reads videos; the caller (the engine) scores crops in large batches in its own process
while the workers go on decoding the next videos. A worker that dies (a decoder crash, the OOM
killer) costs the video it was reading, read again alone and then an error row; one past the
time limit (`--video-timeout`) is killed and its video is an error row at once. The other
videos, and the run, go on.
"""
from __future__ import annotations

import logging
import os
from typing import Iterator

from .. import pipeline
from ..logs import log_in_worker, worker_level
from ..options import EngineOptions
from .base import test_hooks
from .pool import ProcessPool

_detector = None
_options = None


def _init(options: pipeline.SampleOptions, decode_threads: int | None = None,
          log_level: int = logging.WARNING) -> None:
    global _detector, _options
    log_in_worker(log_level)  # escaped lines at the parent's level, never raw
    import cv2
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own pool would oversubscribe
    from .. import video
    video.set_decode_threads(decode_threads)  # and FFmpeg's (see video.set_decode_threads)
    from ..detect import FaceDetector
    _options = options
    _detector = FaceDetector(min_score=options.min_score)


def _work(path: str) -> pipeline.VideoCrops:
    test_hooks(path)
    try:
        return pipeline.crops_from_video(path, _options, _detector)
    except Exception as e:  # crops_from_video reports bad videos itself; this is a bug
        return pipeline.internal_error(path, e)


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


def decode_threads(workers: int) -> int:
    """FFmpeg threads per worker: the cores the workers leave, shared out (1 with the default
    of a worker per core)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def video_pool(options: pipeline.SampleOptions, workers: int, window: int | None = None,
               timeout_s: float | None = None) -> ProcessPool:
    """The pool that reads videos: `run(paths)` yields one VideoCrops per path, in order."""
    return ProcessPool(workers, _init, (options, decode_threads(workers), worker_level()), _work,
                       crashed=crashed, timed_out=lambda path: timed_out(path, timeout_s),
                       window=window, timeout_s=timeout_s)


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
            from ..detect import FaceDetector
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
            self._pool = video_pool(self.options, self.workers, timeout_s=self.timeout_s)
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
