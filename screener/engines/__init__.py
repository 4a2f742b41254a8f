"""Engines run the per-video unit of work (`pipeline.crops_from_video`) over many videos, score
the crops in batches across videos and yield one `VideoResult` per video, in input order.

Every engine has the same shape (`base.Engine`), so the scan does not care which one runs:

    engine = make_engine(EngineOptions("local", workers=2), scorer, SampleOptions(frames=16))
    for result in engine.run(paths): ...

`local` runs worker processes on this machine (engines/local.py, engines/workers.py); `ray`
runs the same per-video function as tasks on a Ray cluster, scoring in actors (engines/ray.py
drives, engines/ray_tasks.py runs on the cluster; needs the `ray` extra).
"""
from __future__ import annotations

import importlib

from ..errors import EngineUnavailable
from ..options import EngineOptions, SampleOptions

# name -> (module, class, the package it needs and how to install it)
ENGINES = {
    "local": ("screener.engines.local", "LocalEngine", None),
    "ray": ("screener.engines.ray", "RayEngine", ("ray", "pip install 'screener[ray]'")),
}


def check_engine(name: str) -> None:
    """Raise EngineUnavailable (saying how to install it) when an engine cannot run here (the
    name is one of ENGINES: EngineOptions checked it)."""
    needs = ENGINES[name][2]
    if needs is not None:
        try:
            importlib.import_module(needs[0])
        except ImportError:
            raise EngineUnavailable(f"the {name} engine needs {needs[0].capitalize()}: "
                                    f"{needs[1]}") from None


def make_engine(options: EngineOptions, scorer, sample: SampleOptions | None = None):
    """The engine `options.name` names, ready to run (it starts its workers on first use)."""
    check_engine(options.name)
    module, cls, _ = ENGINES[options.name]
    return getattr(importlib.import_module(module), cls)(scorer, sample, options)
