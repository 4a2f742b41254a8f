"""Run the per-video unit (`pipeline.crops_from_video`) in worker processes, results in order.

Decoding, detection and alignment are CPU-bound and hold the GIL, so they run in processes:
each worker loads the face detector once, then reads videos one at a time. At most `window`
videos are in flight or waiting to be yielded, so memory is bounded however many videos there
are; the caller (the engine) scores crops in large batches in its own process while the
workers go on decoding the next videos.

Workers start with "spawn": the parent usually holds TensorFlow's thread pools, which a fork
would copy in a broken state. Each worker has a pipe of its own to this process, and a thread
here (the pool's manager) hands out videos, takes results and watches the workers, so a worker
that dies, however it dies (a decoder crash, SIGKILL, the OOM killer), costs only the video it
was reading, which is known exactly: the other workers go on, a new worker takes its place, and
the video is read again alone (nothing else is read meanwhile: if memory was short, it has
all of it); if that worker dies too, the video becomes an error row. (concurrent.futures'
ProcessPoolExecutor fails every video in flight when one worker dies and must be restarted
whole; pools whose workers share one pipe and its lock can hang for ever when a worker is
killed holding it.)

The time limit per video (`timeout_s`) is kept here too: a worker that spends longer on one
video is killed (a decoder stuck in native code cannot be interrupted any other way), the video
becomes an error row at once, without a retry (it would hang again), and a new worker starts.

A worker whose parent dies without stopping it (SIGKILL, the OOM killer) watches its parent
and exits when it is gone, even in the middle of a video.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from multiprocessing.connection import wait as wait_for
from typing import Iterable, Iterator

from .. import pipeline
from ..logs import log_in_worker, worker_level
from ..options import EngineOptions
from .base import test_hooks

log = logging.getLogger(__name__)

_detector = None
_options = None


def _init(options: pipeline.SampleOptions, decode_threads: int | None = None,
          log_level: int = logging.WARNING) -> None:
    global _detector, _options
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
    test_hooks(path)
    try:
        return pipeline.crops_from_video(path, _options, _detector)
    except Exception as e:  # crops_from_video reports bad videos itself; this is a bug
        return pipeline.internal_error(path, e)


# Messages from a worker: (READY, None) once it can read, (DONE, VideoCrops) per video,
# (FAILED, why) when it cannot start.
READY, DONE, FAILED = "ready", "done", "failed"


def _serve(conn, *initargs) -> None:
    """A worker's life: start, then read each path this process sends until it sends None or
    goes away."""
    try:
        _init(*initargs)
    except BaseException as e:  # noqa: B036 - said to the parent, which raises it
        conn.send((FAILED, f"{type(e).__name__}: {e}"))
        return
    conn.send((READY, None))
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if path is None:
            return
        conn.send((DONE, _work(path)))


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


def _how_it_ended(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class WorkerStartError(RuntimeError):
    """Worker processes cannot start (their detector does not load, or they die starting)."""


class _Worker:
    """A worker process and this process's end of its pipe."""

    def __init__(self, ctx, initargs: tuple):
        self.conn, theirs = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(theirs, *initargs), daemon=True,
                                   name="screener-worker")
        self.process.start()
        theirs.close()  # only the worker holds its end: its death is end-of-file here
        self.ready = False
        self.job: int | None = None        # the index of the video it is reading
        self.deadline: float | None = None

    def give(self, index: int, path: str, timeout_s: float | None) -> bool:
        """Hand it a video; False when it has died meanwhile (the video was not given)."""
        try:
            self.conn.send(path)
        except OSError:
            return False
        self.job = index
        self.deadline = time.monotonic() + timeout_s if timeout_s else None
        return True

    def stop(self, kill: bool = False) -> None:
        """Ask it to end (kill: end it now), and wait until it has."""
        if not kill and self.job is None and self.ready:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


class WorkerPool:
    """`imap`-like over videos: `run(paths)` yields one VideoCrops per path, in the order of
    `paths`. The workers start when first needed and stay for later runs until close()."""

    MAX_START_FAILURES = 3  # workers in a row that die before they are ready

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
        self._ctx = multiprocessing.get_context("spawn")
        self._initargs = (options, decode_threads(workers), worker_level())
        self._live: list[_Worker] = []
        self._lock = threading.Lock()       # guards _live against abort() from another thread
        self.stats = {"crashed": 0, "timed_out": 0, "retried": 0, "started": 0}

    # --- a run ---

    def run(self, paths: Iterable[str]) -> Iterator[pipeline.VideoCrops]:
        paths = list(paths)
        if not paths:
            return
        run = _Run(self, paths)
        try:
            for index in range(len(paths)):
                yield run.take(index)
        finally:
            run.stop()

    # --- the workers ---

    def _start_worker(self) -> _Worker:
        w = _Worker(self._ctx, self._initargs)
        self.stats["started"] += 1
        with self._lock:
            self._live.append(w)
        return w

    def _drop(self, w: _Worker, kill: bool = True) -> None:
        with self._lock:
            if w in self._live:
                self._live.remove(w)
        w.stop(kill=kill)

    def close(self) -> None:
        """Stop the workers once they are idle (a run in progress is abandoned)."""
        with self._lock:
            live, self._live = self._live, []
        for w in live:
            w.stop()

    def abort(self) -> None:
        """Stop without waiting for videos in flight (interrupted, or the consumer left): the
        workers only read videos, so they are killed."""
        with self._lock:
            live, self._live = self._live, []
        for w in live:
            w.stop(kill=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.abort()
        self.close()


class _Run:
    """One `WorkerPool.run`: its manager thread hands out the videos and collects results,
    which `take` returns in order."""

    def __init__(self, pool: WorkerPool, paths: list[str]):
        self.pool, self.paths = pool, paths
        self.results: dict[int, pipeline.VideoCrops] = {}
        self.head = 0                      # the next index `take` returns
        self.next = 0                      # the next index to hand out
        self.again: deque[int] = deque()   # indexes whose worker died: read again, alone
        self.redo: deque[int] = deque()    # indexes a worker died before it was given them
        self.alone: int | None = None      # the index read alone now
        self.deaths: dict[int, int] = {}
        self.start_failures = 0
        self.error: BaseException | None = None
        self.stopping = False
        self.cond = threading.Condition()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.thread = threading.Thread(target=self._manage, name="screener-pool", daemon=True)
        self.thread.start()

    def take(self, index: int) -> pipeline.VideoCrops:
        with self.cond:
            while index not in self.results and self.error is None:
                self.cond.wait(1.0)
            if index not in self.results:
                raise self.error
            self.head = index + 1
            result = self.results.pop(index)
        self._wake()  # the window moved on
        return result

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
        self._wake()
        self.thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:  # already awake
            pass

    def _done(self, index: int, result: pipeline.VideoCrops) -> None:
        with self.cond:
            self.results[index] = result
            self.cond.notify_all()

    # --- the manager thread ---

    def _manage(self) -> None:
        try:
            while True:
                with self.cond:
                    if self.stopping:
                        break
                    head = self.head
                self._hand_out(head)
                self._wait_and_collect()
                self._expire()
        except BaseException as e:  # noqa: B036 - given to the consumer, which raises it
            with self.cond:
                self.error = e
                self.cond.notify_all()
        finally:
            # Videos still being read are not wanted any more (the consumer stopped early).
            for w in list(self.pool._live):
                if w.job is not None:
                    self.pool._drop(w)

    def _busy(self) -> list[_Worker]:
        return [w for w in self.pool._live if w.job is not None]

    def _hand_out(self, head: int) -> None:
        pool = self.pool
        if self.alone is not None:
            return
        end = min(len(self.paths), head + pool.window)
        wanted = len(self.again) or len(self.redo) + max(0, end - self.next)
        starting = sum(not w.ready for w in pool._live)
        for _ in range(min(wanted - starting, pool.workers - len(pool._live))):
            pool._start_worker()
        idle = [w for w in pool._live if w.ready and w.job is None]
        if self.again:
            if idle and not self._busy():
                index = self.again.popleft()
                if idle[0].give(index, self.paths[index], pool.timeout_s):
                    self.alone = index
                    pool.stats["retried"] += 1
                else:
                    self.again.appendleft(index)
            return
        for w in idle:
            if self.redo:
                index = self.redo.popleft()
            elif self.next < end:
                index, self.next = self.next, self.next + 1
            else:
                break
            if not w.give(index, self.paths[index], pool.timeout_s):
                self.redo.appendleft(index)  # it died idle: the next worker takes the video

    def _wait_and_collect(self) -> None:
        live = list(self.pool._live)
        deadlines = [w.deadline for w in live if w.deadline is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready = wait_for([self._wake_r, *(w.conn for w in live),
                          *(w.process.sentinel for w in live)], timeout)
        if self._wake_r in ready:
            os.read(self._wake_r, 4096)
        for w in live:
            if w.conn in ready or w.process.sentinel in ready:
                self._collect(w)

    def _collect(self, w: _Worker) -> None:
        """Take what the worker sent; a worker gone (its pipe at end of file) is replaced."""
        while True:
            try:
                if not w.conn.poll(0):
                    break
                kind, value = w.conn.recv()
            except (EOFError, OSError):  # it died, maybe half-way through a message
                break
            if kind == READY:
                w.ready, self.start_failures = True, 0
            elif kind == DONE:
                index, w.job, w.deadline = w.job, None, None
                if index == self.alone:
                    self.alone = None
                self._done(index, value)
            else:  # FAILED: the detector cannot load; every worker would say the same
                self.pool._drop(w)
                raise WorkerStartError(f"a worker process could not start: {value}")
        if w.process.is_alive():
            return
        w.process.join()
        self._lost(w)

    def _lost(self, w: _Worker) -> None:
        pool = self.pool
        pool._drop(w)
        if not w.ready:
            self.start_failures += 1
            if self.start_failures >= pool.MAX_START_FAILURES:
                raise WorkerStartError(f"worker processes die as they start "
                                       f"({_how_it_ended(w.process)}, {self.start_failures} "
                                       "times in a row)")
        if w.job is None:
            return
        index, path = w.job, self.paths[w.job]
        pool.stats["crashed"] += 1
        self.deaths[index] = self.deaths.get(index, 0) + 1
        if self.alone == index:
            self.alone = None
        if self.deaths[index] == 1:
            log.warning("%s: the worker process reading it ended (%s); reading it again, "
                        "alone", path, _how_it_ended(w.process))
            self.again.append(index)
        else:
            self._done(index, crashed(path))

    def _expire(self) -> None:
        """Workers past their video's time limit are killed: that video is an error row."""
        now = time.monotonic()
        for w in list(self.pool._live):
            if w.deadline is None or w.deadline > now or w.conn.poll(0):
                continue  # in time, or its result is arriving
            index = w.job
            self.pool._drop(w)
            self.pool.stats["timed_out"] += 1
            if self.alone == index:
                self.alone = None
            self._done(index, timed_out(self.paths[index], self.pool.timeout_s))


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
