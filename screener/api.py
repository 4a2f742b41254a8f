"""The Python API of a scan: `screener.scan(paths)` -> one VideoResult per video.

    import screener
    for r in screener.scan(["clips/"], frames=16):
        print(r.path, r.status, r.verdict, r.fake_score)

`iter_scan` yields the same results one at a time, as each video finishes (the CLI writes its
report rows from it). Heavy modules (TensorFlow, mediapipe) load on first use, not on import.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator

from .discover import find_videos
from .verdict import VideoResult


def iter_scan(paths: Iterable[str | os.PathLike] | str | os.PathLike, *, model=None,
              threshold: float | None = None, frames: int = 32, every_s: float | None = None,
              all_faces: bool = False, batch_size: int = 256, scorer=None, options=None,
              engine: str = "local", discover: bool = True) -> Iterator[VideoResult]:
    """Screen videos and yield one VideoResult per file, in a stable order.

    paths: files, folders (recursive) and glob patterns, or with `discover=False` the exact
        list of files (as `discover.find_videos` returned it).
    model, threshold: a model file (default: the shipped model) and a threshold overriding its
        card's; or pass an already loaded `scorer` (`scoring.load_model`).
    frames, every_s, all_faces: sampling (see `pipeline.SampleOptions`; `options` overrides).
    Raises discover.InputError (nothing to scan) and ModelError before any video is read;
    a video that cannot be read is a result with status "error", never an exception.
    """
    from .engines import make_engine
    from .pipeline import SampleOptions

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos = find_videos(paths) if discover else [os.fspath(p) for p in paths]
    if scorer is None:
        from .scoring import load_model
        scorer = load_model(model, threshold)
    if options is None:
        options = SampleOptions(frames=frames, every_s=every_s, all_faces=all_faces)
    yield from make_engine(engine, scorer, options, batch_size=batch_size).run(videos)


def scan(paths, **kwargs) -> list[VideoResult]:
    """Screen videos and return all results (see `iter_scan` for the arguments)."""
    return list(iter_scan(paths, **kwargs))
