"""The local engine: a pipeline of worker processes feeding one inference stage.

Workers (`workers.WorkerPool`, default one per core) decode, detect and align; this process
scores the crops. Crops of consecutive videos are pooled until `batch_size` of them wait (or a
video without crops arrives while nothing waits), then scored in one call, so many short
videos still fill the model's batches, and the workers keep decoding meanwhile. Results come
out in input order as soon as their scores are known. `workers=0` runs everything in this
process, one video after another (same results). `video_timeout_s` limits the time a worker
may spend on one video (then an error row); it needs worker processes.
"""
from __future__ import annotations

import logging
from typing import Iterator, Sequence

import numpy as np

from .. import pipeline
from ..verdict import VideoResult, aggregate

log = logging.getLogger(__name__)


class LocalEngine:
    def __init__(self, scorer, options: "pipeline.SampleOptions | None" = None,
                 batch_size: int = 256, detector=None, workers: int | None = None,
                 video_timeout_s: float | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        from .workers import VideoReader
        self.scorer = scorer
        self.options = options or pipeline.SampleOptions()
        self.batch_size = batch_size
        self.reader = VideoReader(self.options, workers, video_timeout_s, detector)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, paths: Sequence[str]) -> Iterator[VideoResult]:
        pending: list = []   # VideoCrops waiting for scores
        waiting = 0          # crops in `pending`
        # Score once a batch the model really runs is full: on a CPU that is 32 crops, and
        # waiting for `batch_size` (256) would leave the model idle while the workers decode,
        # then the workers idle while it scores the last videos' crops.
        batch_for = getattr(self.scorer, "batch_for", None)
        flush_at = batch_for(self.batch_size) if batch_for else self.batch_size
        for video in self.reader.videos(list(paths)):
            pending.append(video)
            waiting += len(video.crops)
            if waiting == 0 or waiting >= flush_at:
                yield from self._finish(pending)
                pending, waiting = [], 0
        yield from self._finish(pending)

    def _model_fields(self) -> dict:
        return dict(model=self.scorer.card.name, threshold=self.scorer.card.threshold)

    def _finish(self, pending: list) -> Iterator[VideoResult]:
        crops = [c.crop for v in pending for c in v.crops]
        scores = (self.scorer.predict(np.stack(crops), batch_size=self.batch_size) if crops
                  else np.zeros((0,), np.float32))
        at = 0
        for v in pending:
            result = aggregate(v, scores[at:at + len(v.crops)], **self._model_fields())
            at += len(v.crops)
            _log_result(result)
            yield result


def _log_result(r: VideoResult) -> None:
    if r.status == "error":
        log.warning("%s: %s", r.path, r.error)
    elif r.status == "no_face":
        log.info("%s: no face (%s)", r.path, r.error)
    else:
        log.info("%s: %s %.3f (%d faces%s)", r.path, r.verdict, r.fake_score, r.faces_scored,
                 f"; {r.note}" if r.note else "")
