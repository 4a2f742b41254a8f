"""The local engine: a pipeline of worker processes feeding one inference stage.

Workers (`workers.VideoReader`, default one per core) decode, detect and align; this process
scores the crops. Crops of consecutive videos are pooled until a batch the model really runs
is full (or a video without crops arrives while nothing waits), then scored in one call, so
many short videos still fill the model's batches, and the workers keep decoding meanwhile.
Results come out in input order as soon as their scores are known. `workers=0` runs everything
in this process, one video after another (same results). `video_timeout_s` limits the time a
worker may spend on one video (then an error row); it needs worker processes.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from ..options import EngineOptions, SampleOptions
from ..verdict import VideoResult
from .base import Engine, log_result


class LocalEngine(Engine):
    name = "local"

    def __init__(self, scorer, sample: SampleOptions | None = None,
                 options: EngineOptions | None = None, detector=None):
        super().__init__(scorer, sample, options)
        from .workers import VideoReader
        self.reader = VideoReader(self.sample, self.options, detector)

    def close(self) -> None:
        self.reader.close()

    def run(self, paths: Sequence[str]) -> Iterator[VideoResult]:
        pending: list = []   # VideoCrops waiting for scores
        waiting = 0          # crops in `pending`
        # Score once a batch the model really runs is full: on a CPU that is 32 crops, and
        # waiting for `batch_size` (256) would leave the model idle while the workers decode,
        # then the workers idle while it scores the last videos' crops.
        batch_size = self.options.batch_size
        batch_for = getattr(self.scorer, "batch_for", None)
        flush_at = batch_for(batch_size) if batch_for else batch_size
        for video in self.reader.videos(list(paths)):
            pending.append(video)
            waiting += len(video.crops)
            if waiting == 0 or waiting >= flush_at:
                yield from self._finish(pending)
                pending, waiting = [], 0
        yield from self._finish(pending)

    def _finish(self, pending: list) -> Iterator[VideoResult]:
        crops = [c.crop for v in pending for c in v.crops]
        scores = (self.scorer.predict(np.stack(crops), batch_size=self.options.batch_size)
                  if crops else np.zeros((0,), np.float32))
        at = 0
        for v in pending:
            result = self.row(v, scores[at:at + len(v.crops)])
            at += len(v.crops)
            log_result(result)
            yield result
