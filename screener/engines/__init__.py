"""Engines run the per-video unit of work (`pipeline.crops_from_video`) over many videos, score
the crops in batches across videos and yield one `VideoResult` per video, in input order.

Every engine has the same shape, so the CLI and `screener.scan` do not care which one runs:

    engine = make_engine("local", scorer, options, batch_size=256)
    for result in engine.run(paths): ...

`local` is sequential (one process). A pipelined multi-process engine and a Ray engine can
replace its inside later and keep this interface and the row order.
"""
from __future__ import annotations

from typing import Iterator, Protocol, Sequence

from ..verdict import VideoResult

ENGINES = ("local",)


class Engine(Protocol):
    def run(self, paths: Sequence[str]) -> Iterator[VideoResult]:
        """One result per path, in the order of `paths`, each yielded as soon as it is known."""


def make_engine(name: str, scorer, options=None, batch_size: int = 256, **kw) -> Engine:
    if name == "local":
        from .local import LocalEngine
        return LocalEngine(scorer, options, batch_size=batch_size, **kw)
    raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
