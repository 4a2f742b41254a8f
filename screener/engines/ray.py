"""The Ray engine: the same scan as the local engine, spread over a Ray cluster.

Ray Core, not Ray Data: input-order rows, error rows after a bounded number of retries and a
hard bound on the object store are each a few lines with tasks and actors (docs/design.md).

    driver (this process)           CPU tasks, any node              scoring actors
    paths ---------------------->  crops_from_video(path) ----+
    VideoCrops without pixels  <-- (meta, crops)              |  crops refs, never the driver
    batches of refs across videos ----------------------------+-> Scorer.predict -> P(fake)
    aggregate() -> VideoResult, in input order  <-------------------- scores

- Each video is one task (engines/ray_tasks.py): a path every node sees, or an object URL
  that the task copies from the store on its node (screener.sources).
- Scoring is an actor pool: one actor per GPU (`num_gpus=1`) when the cluster has GPUs, else
  one CPU actor per node. Each loads the model file once and checks its sha256 against the
  driver's. A batch goes to the actor with the fewest batches in flight.
- Bounded work: at most `window` videos decoding, fewer than `batch_size` crops waiting to be
  batched and two batches per actor; when scoring is slower, decoding waits, so the object
  store holds at most window videos + (2 * actors + 1) batches of crops (`stats` says the peak).
- Faults: tasks run with Ray's retries off and the driver retries a video whose worker or node
  died (`max_retries` times, then the local engine's error row), so a video that kills its
  worker every time ends as a row, never a loop (Ray would retry OOM kills without end).
- A time limit per video (`video_timeout_s`): every second the driver asks which running
  videos are past it (engines/ray_deadlines.py), cancels those tasks (force: the worker process
  is killed, as a decoder stuck in native code allows nothing else) and gives each an error
  row, never a retry.
- Joining or starting Ray and placing the scoring actors: engines/ray_cluster.py.
- The driver keeps the state and the report (screener.state); workers only compute.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import ray

from .. import pipeline
from ..errors import ModelError
from ..logs import worker_level
from ..options import EngineOptions, SampleOptions
from ..verdict import VideoResult
from .base import Engine, log_result
from . import ray_cluster
from .ray_deadlines import Deadlines
from .ray_tasks import CROP_BYTES, Clock, ScoringActor, video_crops
from .workers import crashed, timed_out

log = logging.getLogger(__name__)


@dataclass
class _Video:
    path: str
    attempt: int = 0
    token: int = 0                    # this try's name for the Clock
    meta_ref: object = None
    crops_ref: object = None
    video: object = None              # VideoCrops without pixels, once known
    result: VideoResult | None = None  # final without scoring (a worker died every time)

    @property
    def n_crops(self) -> int:
        return len(self.video.crops) if self.video is not None and self.result is None else 0


@dataclass
class _Batch:
    videos: list
    actor: int | None = None
    ref: object = None                # scores, or None when there is nothing to score
    done: bool = False

    @property
    def n_crops(self) -> int:
        return sum(v.n_crops for v in self.videos)


@dataclass
class RayStats:
    """What a run did, for tests and the benchmark."""
    videos: int = 0
    retries: int = 0
    timed_out: int = 0
    batches: int = 0
    actors: int = 0
    gpus_per_actor: float = 0
    peak_videos_in_flight: int = 0
    peak_crops_held: int = 0          # crops the driver keeps alive in the object store
    nodes: dict = field(default_factory=dict)  # node id -> tasks finished there

    @property
    def peak_crop_mb(self) -> float:
        return self.peak_crops_held * CROP_BYTES / 2**20


class RayEngine(Engine):
    name = "ray"
    actor_class = ScoringActor  # a subclass can stand in (the benchmark slows scoring down)

    def __init__(self, scorer, sample: SampleOptions | None = None,
                 options: EngineOptions | None = None, window: int | None = None,
                 actors: int | None = None, max_retries: int = 2, actor_cpus: float = 0):
        """options.address: a cluster to join (else RAY_ADDRESS, else a local Ray started here
        and shut down by close()); an already initialised Ray in this process is used as it
        is. options.workers: the CPUs to keep busy decoding (default: the cluster's). window:
        videos in flight (default 2 * workers + 2). actors: scoring actors (default: one per
        GPU, else one per node). actor_cpus: CPUs a scoring actor reserves (0: it shares its
        node with the tasks, as the local engine's driver shares the machine with its
        workers). options.video_timeout_s: the time a task may spend on one video (then an
        error row)."""
        super().__init__(scorer, sample, options)
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        path = getattr(scorer.card, "path", "")
        if not path or not os.path.isfile(path):
            raise ModelError("the ray engine needs a model file to load on the cluster "
                             "(scoring.load_model(path))")
        self.batch_size = self.options.batch_size
        self.address = self.options.address
        self.workers = self.options.workers or None
        self.window = window
        self.actors = actors
        self.max_retries = max_retries
        self.actor_cpus = actor_cpus
        self.video_timeout_s = self.options.video_timeout_s
        self._clock = None
        self._deadlines: Deadlines | None = None
        self._tokens = 0
        self.stats = RayStats()
        self._log_level = worker_level()
        self._started_ray = False
        self._pool: list = []
        self._task = None

    # -- cluster -----------------------------------------------------------------------

    def _connect(self) -> None:
        if not ray.is_initialized():
            self._started_ray = ray_cluster.join(self.address)
        if self._task is None:
            self._task = ray.remote(num_cpus=1, max_retries=0, num_returns=2)(video_crops)
        if self.video_timeout_s is not None and self._clock is None:
            # Calls wait out a restart instead of failing: a task's start() is never lost.
            self._clock = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(Clock).remote()
            self._deadlines = Deadlines(self._clock, self.video_timeout_s)
        if not self._pool:
            self._pool, gpus = ray_cluster.scoring_actors(
                self.actor_class, self.scorer.card, getattr(self.scorer, "runtime_choice", "auto"),
                self.batch_size, self.actors, self.actor_cpus)
            self.stats.actors, self.stats.gpus_per_actor = len(self._pool), gpus

    def close(self) -> None:
        ray_cluster.leave(self._pool + ([self._clock] if self._clock is not None else []),
                          self._started_ray)
        self._pool, self._clock, self._started_ray = [], None, False

    # -- one run -----------------------------------------------------------------------

    def _submit(self, v: _Video) -> _Video:
        self._tokens += 1
        v.token = self._tokens
        v.meta_ref, v.crops_ref = self._task.remote(v.path, self.sample, self._clock, v.token,
                                                    self._log_level)
        v.video = None
        return v

    def _stop_overdue(self, flight, every: bool = True) -> None:
        """Cancel the running tasks past the time limit; each video becomes an error row.
        `every`: `flight` holds every video in flight (else only some: forget nothing)."""
        running = {v.token: v for v in flight if v.video is None}
        if not running:
            return
        for token in self._deadlines.overdue(list(running), every):
            v = running[token]
            try:
                ray.cancel(v.meta_ref, force=True)
            except Exception as e:  # finished meanwhile, or Ray is going away: row all the same
                log.debug("%s: cancel failed: %s", v.path, e)
            log.warning("%s: over the %g s limit; stopped", v.path, self.video_timeout_s)
            self.stats.timed_out += 1
            v.result = self.row(timed_out(v.path, self.video_timeout_s), [])
            v.video = v.result

    def _resolve(self, v: _Video) -> None:
        """Fetch a finished task's metadata; a dead worker or node means another try."""
        try:
            v.video, node = ray.get(v.meta_ref)
            self.stats.nodes[node] = self.stats.nodes.get(node, 0) + 1
        except ray.exceptions.RayTaskError as e:  # raised by our code: a bug, no retry
            v.video = pipeline.internal_error(v.path, getattr(e, "cause", None) or e,
                                              logged=True)  # in the task's log
        except ray.exceptions.RayError as e:  # worker or node died, object lost, OOM kill
            if v.attempt < self.max_retries:
                v.attempt += 1
                self.stats.retries += 1
                log.warning("%s: %s; retrying (%d of %d)", v.path, type(e).__name__,
                            v.attempt, self.max_retries)
                self._submit(v)
                return
            log.warning("%s: the worker died on each of %d tries", v.path, v.attempt + 1)
            v.result = self._crashed(v.path)
            v.video = v.result

    def _crashed(self, path: str) -> VideoResult:
        return self.row(crashed(path), [])

    def run(self, paths: Sequence[str]) -> Iterator[VideoResult]:
        paths = list(paths)
        if not paths:
            return
        self._connect()
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        window = self.window or 2 * workers + 2
        per_actor = 2
        todo, exhausted = iter(paths), False
        flight: deque[_Video] = deque()   # submitted, in input order
        pending: list[_Video] = []        # known, waiting to fill a batch
        batches: deque[_Batch] = deque()  # scoring or scored, in input order
        load = [0] * len(self._pool)      # batches in flight per actor

        def submit_batch() -> bool:
            nonlocal pending
            crops = [v.crops_ref for v in pending if v.n_crops]
            b = _Batch(pending)
            if crops:
                free = min(range(len(load)), key=load.__getitem__)
                if load[free] >= per_actor:
                    return False
                b.actor, b.ref = free, self._pool[free].score.remote(*crops)
                load[free] += 1
                self.stats.batches += 1
            else:
                b.done = True
            batches.append(b)
            pending = []
            return True

        try:
            while True:
                # Known videos move to `pending` in order, the input refilling `flight`
                # behind them; a full batch (or videos without crops while no crop waits,
                # or the end of the input) goes to the least loaded actor.
                while True:
                    while len(flight) < window and not exhausted:
                        path = next(todo, None)
                        if path is None:
                            exhausted = True
                        else:
                            flight.append(self._submit(_Video(path)))
                    waiting = sum(v.n_crops for v in pending)
                    if pending and (waiting >= self.batch_size or waiting == 0
                                    or (exhausted and not flight)):
                        if not submit_batch():
                            break
                    elif flight and flight[0].video is not None:
                        pending.append(flight.popleft())
                    else:
                        break
                held = (sum(v.n_crops for v in flight) + sum(v.n_crops for v in pending)
                        + sum(b.n_crops for b in batches if not b.done))
                self.stats.peak_crops_held = max(self.stats.peak_crops_held, held)
                self.stats.peak_videos_in_flight = max(self.stats.peak_videos_in_flight,
                                                       len(flight))
                while batches and batches[0].done:
                    yield from self._finish(batches.popleft())
                if not (flight or pending or batches):
                    return
                waits = {v.meta_ref: v for v in flight if v.video is None}
                waits.update({b.ref: b for b in batches if not b.done})
                if not waits:
                    continue
                if self._clock is None:
                    ray.wait(list(waits), num_returns=1)
                else:  # wake up every second to look for videos over the limit
                    ray.wait(list(waits), num_returns=1, timeout=1.0)
                    self._stop_overdue(flight)
                    waits = {r: x for r, x in waits.items()
                             if not (isinstance(x, _Video) and x.video is not None)}
                    if not waits:
                        continue
                ready, _ = ray.wait(list(waits), num_returns=len(waits), timeout=0)
                for ref in ready:
                    item = waits[ref]
                    if isinstance(item, _Batch):
                        item.done = True
                        load[item.actor] -= 1
                    else:
                        self._resolve(item)
        except BaseException:  # Ctrl-C, or the consumer left: stop the cluster's work now
            for v in list(flight) + pending:
                if v.video is None and v.meta_ref is not None:
                    try:
                        ray.cancel(v.meta_ref, force=True)
                    except Exception:  # Ray already shut down: nothing left to stop
                        pass
            raise

    def _finish(self, batch: _Batch) -> Iterator[VideoResult]:
        scores = np.zeros((0,), np.float32)
        if batch.ref is not None:
            try:
                try:
                    scores = ray.get(batch.ref)
                except ray.exceptions.RayError as e:
                    if _lost(e):
                        raise
                    log.warning("a scoring batch failed (%s); scoring it again",
                                type(e).__name__)
                    scores = self._score([v.crops_ref for v in batch.videos if v.n_crops],
                                         avoid=batch.actor)
            except ray.exceptions.RayError as e:  # crops lost with their node: redo them
                log.warning("a scoring batch failed (%s); recomputing its videos",
                            type(e).__name__)
                yield from self._redo(batch.videos)
                return
        at = 0
        for v in batch.videos:
            self.stats.videos += 1
            if v.result is not None:
                result = v.result
            else:
                result = self.row(v.video, scores[at:at + v.n_crops])
                at += v.n_crops
            log_result(result)
            yield result

    def _score(self, crops: list, avoid: int | None = None) -> np.ndarray:
        """Score on any live actor, trying the others first when one failed (Ray restarts a
        dead actor meanwhile). Raises at once when the crops are lost, else after a few tries."""
        n = len(self._pool)
        first = 0 if avoid is None else avoid + 1
        for k in range(2 * n + 2):
            try:
                return ray.get(self._pool[(first + k) % n].score.remote(*crops))
            except ray.exceptions.RayError as e:
                if _lost(e) or k == 2 * n + 1:
                    raise
                time.sleep(min(1 + k, 5))
        raise AssertionError("unreachable")

    def _redo(self, videos: list) -> Iterator[VideoResult]:
        """The slow path after a batch lost its crops: each video with crops again, alone,
        in order. A try counts against the video only when its crops are computed again."""
        for v in videos:
            while v.result is None:
                if v.n_crops == 0:  # nothing to score: its row is known already
                    v.result = self.row(v.video, [])
                    break
                try:
                    v.result = self.row(v.video, self._score([v.crops_ref]))
                    break
                except ray.exceptions.RayError as e:
                    if not _lost(e):
                        raise  # no actor can score: the scan cannot go on
                if v.attempt >= self.max_retries:
                    v.result = self._crashed(v.path)
                    break
                v.attempt += 1
                self.stats.retries += 1
                self._submit(v)
                while v.video is None:
                    if self._clock is None:
                        ray.wait([v.meta_ref])
                    elif not ray.wait([v.meta_ref], timeout=1.0)[0]:
                        self._stop_overdue([v], every=False)  # over the limit: v.result is its error row
                        continue
                    self._resolve(v)  # may submit it again, or give up (v.result)
            self.stats.videos += 1
            log_result(v.result)
            yield v.result


def _lost(e: Exception) -> bool:
    """Whether a Ray error means an object (crops) is gone, rather than an actor."""
    lost = ray.exceptions.ObjectLostError
    return isinstance(e, lost) or isinstance(getattr(e, "cause", None), lost)
