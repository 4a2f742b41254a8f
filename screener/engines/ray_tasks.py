"""The Ray engine's work as it runs on the cluster: the per-video task, the scoring actor and
the clock that times videos (engines/ray.py is the driver that uses them).

- `video_crops` is the per-video unit as a task (`num_cpus=1`): `pipeline.crops_from_video`,
  the function every engine runs, on a path every node must see (or an object it copies from
  the store on this node); it returns the video's metadata without pixels (to the driver) and
  its crops as one uint8 array (left in the object store, read by the actor that scores them).
- `ScoringActor` loads a model file once and checks its sha256 against the driver's.
- `Clock` is told when each task starts, so the driver can stop tasks past the time limit by
  one clock for all nodes.
"""
from __future__ import annotations

import logging
import os
import socket
import time

import numpy as np
import ray

from .. import pipeline
from ..errors import EngineUnavailable, ModelError
from ..logs import log_in_worker
from .base import test_hooks

log = logging.getLogger(__name__)

CROP_BYTES = 256 * 256 * 3
NO_CROPS = np.zeros((0, 256, 256, 3), np.uint8)

_detector = None   # one per Ray worker process, reused by every task it runs


def video_crops(path: str, options: pipeline.SampleOptions, clock=None, token: int = 0,
                 log_level: int = logging.WARNING):
    """The per-video unit as a task: ((VideoCrops without pixels, node id), crops array).
    With a `clock` (a time limit is set), it first says it has started. Its log lines are
    escaped, at the driver's level (they go to the worker's log file)."""
    global _detector
    log_in_worker(log_level)
    if clock is not None:
        clock.start.remote(token)
    test_hooks(path)
    try:
        if _detector is None or _detector.min_score != options.min_score:
            import cv2
            cv2.setNumThreads(1)  # Ray runs one task per CPU; OpenCV's pool would oversubscribe
            from .. import video as video_mod
            video_mod.set_decode_threads(1)  # and so would FFmpeg's (video.set_decode_threads)
            from ..detect import FaceDetector
            _detector = FaceDetector(min_score=options.min_score)
        video = pipeline.crops_from_video(path, options, _detector)
    except Exception as e:  # crops_from_video reports bad videos itself; this is a bug
        video = pipeline.internal_error(path, e)
    crops = np.stack([c.crop for c in video.crops]) if video.crops else NO_CROPS
    for c in video.crops:
        c.crop = None  # the pixels travel once, as one array, to an actor
    return (video, ray.get_runtime_context().get_node_id()), crops


class Clock:
    """When each running video task started, by this actor's clock (one clock for all nodes).
    `instance` changes when Ray restarts the actor (its node was lost), which empties it."""

    def __init__(self):
        self.started: dict[int, float] = {}
        self.instance = os.urandom(8).hex()

    def start(self, token: int) -> None:
        self.started[token] = time.monotonic()

    def elapsed(self, running: list[int], every: bool) -> tuple[str, dict[int, float]]:
        """Seconds since each of `running` started (those it heard of). `every`: these are all
        the running videos, so it forgets the others."""
        now = time.monotonic()
        if every:
            self.started = {t: self.started[t] for t in running if t in self.started}
        return self.instance, {t: now - self.started[t] for t in running if t in self.started}


class ScoringActor:
    """Loads a model file once and scores crop arrays from the object store."""

    def __init__(self, model_path: str, threshold: float | None, sha256: str, batch_size: int,
                 runtime: str = "auto"):
        from ..scoring import load_model
        self.scorer = load_model(model_path, threshold, runtime=runtime)
        self.scorer.load_now()
        if sha256 and self.scorer.card.sha256 != sha256:
            raise ModelError(f"{model_path} on node {ray.util.get_node_ip_address()} is not "
                             "the driver's model file (sha256 differs)")
        self.batch_size = batch_size
        self.scorer.predict(NO_CROPS[:0])

    def score(self, *crops: np.ndarray) -> np.ndarray:
        batch = np.concatenate(crops) if len(crops) > 1 else crops[0]
        return self.scorer.predict(batch, batch_size=self.batch_size)

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a wrong --address: ray.init retries an unreachable GCS without end."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local" and the like: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise EngineUnavailable(f"cannot join the Ray cluster at {address}: "
                                f"{e.strerror or e}") from None
