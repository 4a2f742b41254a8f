"""Engines run the per-video unit of work (`pipeline.crops_from_video`) over many videos, score
the crops in batches across videos and yield one `VideoResult` per video, in input order.

Every engine has the same shape, so the CLI and `screener.scan` do not care which one runs:

    engine = make_engine("local", scorer, options, batch_size=256)
    for result in engine.run(paths): ...

`local` runs worker processes on this machine (engines/local.py); `ray` runs the same
per-video function as tasks on a Ray cluster, scoring in actors (engines/ray.py, needs the
`ray` extra).
"""
from __future__ import annotations

from typing import Iterator, Protocol, Sequence

from ..errors import EngineUnavailable
from ..verdict import VideoResult

ENGINES = ("local", "ray")
RAY_INSTALL = "pip install 'screener[ray]'"


class Engine(Protocol):
    def run(self, paths: Sequence[str]) -> Iterator[VideoResult]:
        """One result per path, in the order of `paths`, each yielded as soon as it is known."""


def check_engine(name: str) -> None:
    """Raise EngineUnavailable (saying how to install it) when an engine cannot run here."""
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise EngineUnavailable(f"the ray engine needs Ray: {RAY_INSTALL}") from None
    elif name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")


def make_engine(name: str, scorer, options=None, batch_size: int = 256, **kw) -> Engine:
    if name == "local":
        if kw.pop("address", None) is not None:
            raise ValueError("an address is for the ray engine")
        from .local import LocalEngine
        return LocalEngine(scorer, options, batch_size=batch_size, **kw)
    if name == "ray":
        check_engine(name)
        from .ray import RayEngine
        return RayEngine(scorer, options, batch_size=batch_size, **kw)
    raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
