"""A pool of worker processes that read one item at a time, each with a pipe of its own: a
worker that dies, or runs past the time limit, costs only the item it was on.

`ProcessPool.run(items)` yields one result per item, in the order of `items`, computed by
`work(item)` in a worker process (after `init(*initargs)` once per worker). A thread here (the
pool's manager) hands out items, takes results and watches the workers, so it knows exactly
which item a worker was on when it died, however it died (a decoder crash, SIGKILL, the OOM
killer): the other workers go on, a new worker takes its place, and the item is tried again
alone (nothing else runs meanwhile: if memory was short, it has all of it); if that worker
dies too, the item's result is `crashed(item)`. A worker past `timeout_s` on one item is
killed (native code stuck in a decoder cannot be interrupted any other way): the result is
`timed_out(item)` at once, never retried (it would hang again). At most `window` items are in
flight or waiting to be yielded, so memory is bounded however many items there are.

Why not concurrent.futures: its ProcessPoolExecutor fails every item in flight when one worker
dies, must then be restarted whole, and a worker killed while sending its result can leave its
manager thread waiting for ever; pools whose workers share one pipe and its lock (pebble) can
hang for ever when a worker is killed holding it. Here each pipe has one worker at its end:
its death is end-of-file, nothing else.

Workers start with "spawn": the parent usually holds TensorFlow's thread pools, which a fork
would copy in a broken state. A worker whose parent dies without stopping it (SIGKILL, the OOM
killer) watches its parent and exits when it is gone, even in the middle of an item.
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
from typing import Callable, Iterable, Iterator

log = logging.getLogger(__name__)


# Messages from a worker: (READY, None) once it can read, (DONE, result) per item,
# (FAILED, why) when it cannot start.
READY, DONE, FAILED = "ready", "done", "failed"


def _serve(conn, init: Callable, initargs: tuple, work: Callable) -> None:
    """A worker's life: start, then work on each item the parent sends until it sends None or
    goes away."""
    # Ctrl-C goes to the whole process group: only the parent decides what happens then.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="screener-parent-watch").start()
    try:
        init(*initargs)
    except BaseException as e:  # noqa: B036 - said to the parent, which raises it
        conn.send((FAILED, f"{type(e).__name__}: {e}"))
        return
    conn.send((READY, None))
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if item is None:
            return
        conn.send((DONE, work(item)))


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    while os.getppid() == parent:  # re-parented (to init or a subreaper): the parent is gone
        time.sleep(every_s)
    os._exit(0)


def _how_it_ended(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class WorkerStartError(RuntimeError):
    """Worker processes cannot start (`init` fails, or they die starting)."""


class _Worker:
    """A worker process and this process's end of its pipe."""

    def __init__(self, ctx, args: tuple):
        self.conn, theirs = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(theirs, *args), daemon=True,
                                   name="screener-worker")
        self.process.start()
        theirs.close()  # only the worker holds its end: its death is end-of-file here
        self.ready = False
        self.job: int | None = None        # the index of the item it is on
        self.deadline: float | None = None

    def give(self, index: int, item, timeout_s: float | None) -> bool:
        """Hand it an item; False when it has died meanwhile (the item was not given)."""
        try:
            self.conn.send(item)
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


class ProcessPool:
    """`imap`-like: `run(items)` yields one result per item, in the order of `items` (see the
    module). `init`, `work` and `initargs` must pickle (module-level functions); `crashed(item)`
    and `timed_out(item)` make the result of an item whose worker died twice or ran out of
    time. The workers start when first needed and stay for later runs until close()."""

    MAX_START_FAILURES = 3  # workers in a row that die before they are ready

    def __init__(self, workers: int, init: Callable, initargs: tuple, work: Callable, *,
                 crashed: Callable, timed_out: Callable, window: int | None = None,
                 timeout_s: float | None = None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.workers = workers
        self.window = window or 2 * workers + 2
        self.timeout_s = timeout_s
        self.crashed, self.timed_out = crashed, timed_out
        self._ctx = multiprocessing.get_context("spawn")
        self._args = (init, initargs, work)
        self._live: list[_Worker] = []
        self._lock = threading.Lock()       # guards _live against abort() from another thread
        self.stats = {"crashed": 0, "timed_out": 0, "retried": 0, "started": 0}

    # --- a run ---

    def run(self, items: Iterable) -> Iterator:
        items = list(items)
        if not items:
            return
        run = _Run(self, items)
        try:
            for index in range(len(items)):
                yield run.take(index)
        finally:
            run.stop()

    # --- the workers ---

    def _start_worker(self) -> _Worker:
        w = _Worker(self._ctx, self._args)
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
        """Stop without waiting for items in flight (interrupted, or the consumer left): the
        workers are killed."""
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
    """One `ProcessPool.run`: its manager thread hands out the items and collects results,
    which `take` returns in order."""

    def __init__(self, pool: ProcessPool, items: list):
        self.pool, self.items = pool, items
        self.results: dict = {}
        self.head = 0                      # the next index `take` returns
        self.next = 0                      # the next index to hand out
        self.again: deque[int] = deque()   # indexes whose worker died: tried again, alone
        self.redo: deque[int] = deque()    # indexes a worker died before it was given them
        self.alone: int | None = None      # the index tried alone now
        self.deaths: dict[int, int] = {}
        self.start_failures = 0
        self.error: BaseException | None = None
        self.stopping = False
        self.cond = threading.Condition()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.thread = threading.Thread(target=self._manage, name="screener-pool", daemon=True)
        self.thread.start()

    def take(self, index: int):
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

    def _done(self, index: int, result) -> None:
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
            # Items still being worked on are not wanted any more (the consumer stopped).
            for w in list(self.pool._live):
                if w.job is not None:
                    self.pool._drop(w)

    def _busy(self) -> list[_Worker]:
        return [w for w in self.pool._live if w.job is not None]

    def _hand_out(self, head: int) -> None:
        pool = self.pool
        if self.alone is not None:
            return
        end = min(len(self.items), head + pool.window)
        wanted = len(self.again) or len(self.redo) + max(0, end - self.next)
        starting = sum(not w.ready for w in pool._live)
        for _ in range(min(wanted - starting, pool.workers - len(pool._live))):
            pool._start_worker()
        idle = [w for w in pool._live if w.ready and w.job is None]
        if self.again:
            if idle and not self._busy():
                index = self.again.popleft()
                if idle[0].give(index, self.items[index], pool.timeout_s):
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
            if not w.give(index, self.items[index], pool.timeout_s):
                self.redo.appendleft(index)  # it died idle: the next worker takes the item

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
            else:  # FAILED: init raised; every worker would say the same
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
        index, item = w.job, self.items[w.job]
        pool.stats["crashed"] += 1
        self.deaths[index] = self.deaths.get(index, 0) + 1
        if self.alone == index:
            self.alone = None
        if self.deaths[index] == 1:
            log.warning("%s: the worker process on it ended (%s); trying it again, alone",
                        item, _how_it_ended(w.process))
            self.again.append(index)
        else:
            self._done(index, pool.crashed(item))

    def _expire(self) -> None:
        """Workers past their item's time limit are killed: its result is `timed_out`."""
        now = time.monotonic()
        for w in list(self.pool._live):
            if w.deadline is None or w.deadline > now or w.conn.poll(0):
                continue  # in time, or its result is arriving
            index = w.job
            self.pool._drop(w)
            self.pool.stats["timed_out"] += 1
            if self.alone == index:
                self.alone = None
            self._done(index, self.pool.timed_out(self.items[index]))


