"""What every engine shares: its inputs, its context-manager shape, and how a row is made.

An engine takes the scorer, the sampling options and its `EngineOptions`; `run(paths)` yields
one VideoResult per path, in the order of `paths`, each as soon as it is known. `prepare()`
(called once there is something to scan) makes a bad model fail before any video is read.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from typing import Iterator, Sequence

import numpy as np

from .. import media
from ..options import EngineOptions, SampleOptions
from ..verdict import ERROR, FAKE, NO_FACE, OK, VideoResult, aggregate

log = logging.getLogger(__name__)


class Engine:
    name = ""  # its key in the registry (screener.engines.ENGINES)

    def __init__(self, scorer, sample: SampleOptions | None = None,
                 options: EngineOptions | None = None):
        self.scorer = scorer
        self.sample = sample or SampleOptions()
        self.options = options or EngineOptions(name=self.name)
        if self.options.name != self.name:
            raise ValueError(f"{self.name} engine given options for {self.options.name}")

    def prepare(self) -> None:
        load_now = getattr(self.scorer, "load_now", None)
        if load_now is not None:
            load_now()

    def run(self, paths: Sequence[str]) -> Iterator[VideoResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def row(self, video, scores) -> VideoResult:
        """A video's row from its crops (pipeline.VideoCrops) and their scores, in order."""
        card = self.scorer.card
        r = aggregate(video, scores, model=card.name, threshold=card.threshold)
        if r.status == OK:  # the thumbnails the visual report shows, while the crops are here
            r.media = media.keep(video.crops, np.asarray(scores, dtype=np.float64).reshape(-1),
                                 lossless_key=r.verdict == FAKE, key_person=r.fake_person)
        return r


def log_result(r: VideoResult) -> None:
    if r.status == ERROR:
        log.warning("%s: %s", r.path, r.error)
    elif r.status == NO_FACE:
        log.info("%s: no face (%s)", r.path, r.error)
    else:
        log.info("%s: %s %.3f (%d faces%s)", r.path, r.verdict, r.fake_score, r.faces_scored,
                 f"; {r.note}" if r.note else "")


def test_hooks(path: str) -> None:
    """Where a worker (a process of the local pool, a Ray task) starts on a video. Unset in
    normal use; tests set them to make a worker die on paths containing
    SCREENER_TEST_KILL_WORKER_ON (as a decoder segfault or the OOM killer would), or hang on
    paths containing SCREENER_TEST_HANG_WORKER_ON (a decoder that never returns)."""
    mark = os.environ.get("SCREENER_TEST_KILL_WORKER_ON")
    if mark and mark in path:
        os.kill(os.getpid(), signal.SIGKILL)
    mark = os.environ.get("SCREENER_TEST_HANG_WORKER_ON")
    if mark and mark in path:
        time.sleep(3600)
