"""The Python API of a scan: `screener.scan(paths)` -> one VideoResult per video.

    import screener
    for r in screener.scan(["clips/"], frames=16):
        print(r.path, r.status, r.verdict, r.fake_score)

`iter_scan` yields the same results one at a time, as each video finishes (the CLI writes its
report rows from it). Heavy modules (TensorFlow, mediapipe) load on first use, not on import.
"""
from __future__ import annotations

import os
from contextlib import closing
from typing import Iterable, Iterator

from .discover import find_videos
from .verdict import VideoResult


def iter_scan(paths: Iterable[str | os.PathLike] | str | os.PathLike, *, model=None,
              threshold: float | None = None, frames: int = 32, every_s: float | None = None,
              all_faces: bool = False, batch_size: int = 256, scorer=None, options=None,
              engine: str = "local", discover: bool = True,
              workers: int | None = None, address: str | None = None,
              video_timeout_s: float | None = None) -> Iterator[VideoResult]:
    """Screen videos and yield one VideoResult per file, in a stable order.

    paths: files, folders (recursive) and glob patterns, or with `discover=False` the exact
        list of files (as `discover.find_videos` returned it).
    model, threshold: a model file (default: the shipped model) and a threshold overriding its
        card's; or pass an already loaded `scorer` (`scoring.load_model`).
    frames, every_s, all_faces: sampling (see `pipeline.SampleOptions`; `options` overrides).
    workers: decode/detect processes (default: one per core; 0: all in this process).
    video_timeout_s: seconds a worker may spend on one video before it is stopped and the
        video becomes an error row (local engine, workers >= 1; default: no limit).
    engine, address: "local", or "ray" with a cluster address (default: RAY_ADDRESS, else
        a local Ray started for the scan); see screener.engines.
    Raises discover.InputError (nothing to scan) and ModelError before any video is read;
    a video that cannot be read is a result with status "error", never an exception.
    """
    from .engines import make_engine
    from .pipeline import SampleOptions

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos = find_videos(paths) if discover else [os.fspath(p) for p in paths]
    if scorer is None:
        from .scoring import load_for_scan
        scorer = load_for_scan(model, threshold)
    if options is None:
        options = SampleOptions(frames=frames, every_s=every_s, all_faces=all_faces)
    with closing(make_engine(engine, scorer, options, batch_size=batch_size, workers=workers,
                             **_engine_kw(address, video_timeout_s))) as e:
        yield from e.run(videos)


def _engine_kw(address, video_timeout_s=None) -> dict:
    kw = {} if address is None else {"address": address}
    if video_timeout_s is not None:
        kw["video_timeout_s"] = video_timeout_s
    return kw


def scan(paths, **kwargs) -> list[VideoResult]:
    """Screen videos and return all results (see `iter_scan` for the arguments)."""
    return list(iter_scan(paths, **kwargs))


def find_videos_or_empty(paths) -> list[str]:
    """`find_videos`, except that folders which exist but hold no video give an empty list:
    an empty drop folder is normal for a scheduled incremental scan (its report empties)."""
    from .discover import InputError
    try:
        return find_videos(paths)
    except InputError:
        args = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        if args and all(os.path.isdir(a) for a in args):
            return []
        raise


def scan_incremental(paths, *, out=None, state=None, fmt: str = "csv", rescan: bool = False,
                     settle_s: float = 30.0, keep_missing: bool = False, frames_out=None,
                     meta: dict | None = None, model=None, threshold: float | None = None,
                     frames: int = 32, every_s: float | None = None, all_faces: bool = False,
                     batch_size: int = 256, scorer=None, options=None, engine: str = "local",
                     workers: int | None = None, address: str | None = None,
                     video_timeout_s: float | None = None,
                     discover: bool = True, on_plan=None, on_result=None,
                     started: float | None = None, check_outputs: bool = True):
    """Scan only what changed since the last run and rewrite the report `out` atomically with
    every current result (see screener.state). Returns a state.RunSummary.

    state: the SQLite state file (default: `<out>.state.sqlite`; required when out is None).
    rescan: scan every file again (and set an unusable state file aside).
    settle_s: files changed less than this many seconds ago are left for the next run.
    keep_missing: keep rows of files that disappeared, with status "missing".
    started: time.monotonic() when the scan began (the CLI: when the command started), the
        start of the elapsed time in the state and the JSON report; default: now.
    video_timeout_s: also bounds each read of a file while planning (its fingerprint).
    check_outputs: first make sure that neither the report, `frames_out` nor the state is
        one of the videos, the model or one another (OutputConflict; a caller that checked
        more outputs already passes False).
    Raises StateLocked when another scan holds the state, StateError when it is unusable,
    OSError when the state or the report cannot be written (ENOSPC: the disk is full).
    """
    from . import state as state_mod
    from .engines import make_engine
    from .pipeline import SampleOptions

    if state is None:
        if out is None or str(out) == "-":
            raise ValueError("scan_incremental needs a state file or a report file")
        state = state_mod.default_state_path(out)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos = find_videos_or_empty(paths) if discover else [os.fspath(p) for p in paths]
    if check_outputs:
        from .outputs import check_outputs as check
        from .scoring import model_inputs
        held = getattr(scorer.card, "path", "") if scorer is not None else None
        check([("out", out), ("frames_out", frames_out), *state_mod.state_outputs(state, "state")],
              [*(("the input", v) for v in videos),
               *(model_inputs(held or model) if held != "" else [])])
    if scorer is None:  # loads the network only if something needs scoring
        from .scoring import load_model_lazily
        scorer = load_model_lazily(model, threshold)
    if options is None:
        options = SampleOptions(frames=frames, every_s=every_s, all_faces=all_faces)
    with closing(make_engine(engine, scorer, options, batch_size=batch_size, workers=workers,
                             **_engine_kw(address, video_timeout_s))) as e:
        return state_mod.run_incremental(
            videos, e, state_path=state,
            model_id=scorer.card.identity, options=repr(options), report_path=out, fmt=fmt,
            meta=meta, frames_out=frames_out, rescan=rescan, settle_s=settle_s,
            keep_missing=keep_missing, read_timeout_s=video_timeout_s, on_plan=on_plan,
            on_result=on_result, started=started)
