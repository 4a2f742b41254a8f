"""The Python API of a scan: `screener.scan(paths)` -> one VideoResult per video.

    import screener
    for r in screener.scan(["clips/"], frames=16, min_face=48):
        print(r.path, r.status, r.verdict, r.fake_score)

Options come as objects (`options.ScanOptions`, with its `SampleOptions` and `EngineOptions`)
or as keywords named as their fields, the same ones the command line builds. `iter_scan`
yields the results one at a time, as each video finishes; `scan_incremental` scans only what
changed since the last run and rewrites a report (the command line's default with `--out`).
Heavy modules (TensorFlow, mediapipe) load on first use, not on import.
"""
from __future__ import annotations

import os
from contextlib import closing
from typing import Iterable, Iterator

from .discover import listed
from .options import ScanOptions, from_keywords
from .verdict import VideoResult


def iter_scan(paths: Iterable[str | os.PathLike] | str | os.PathLike,
              options: ScanOptions | None = None, *, scorer=None, discover: bool = True,
              **keywords) -> Iterator[VideoResult]:
    """Screen videos and yield one VideoResult per file, in a stable order.

    paths: files, folders (recursive) and glob patterns, or with `discover=False` the exact
        list of files (as `discover.find_videos` returned it).
    options / keywords: a ScanOptions, and keywords that change it: the model (`model`, a
        model file or a shipped model's name, screener.shipped; default the shipped
        default), `threshold`, `runtime`, sampling (`frames`, `every_s`, `largest_face`,
        `min_face`, `min_score`, or `sample=SampleOptions(...)`) and the engine
        (`engine="local"|"ray"` or an EngineOptions, `workers`, `address`,
        `video_timeout_s`, `batch_size`); see screener.options.
    scorer: an already loaded model (`scoring.load_model`) instead of `model`.
    Raises discover.InputError (nothing to scan), OptionsError, UnknownModel (a model name
    nothing ships) and ModelError before any video is read; a video that cannot be read is
    a result with status "error", never an exception.
    """
    from .engines import make_engine
    options = from_keywords(options=options, **keywords)
    videos = listed(paths, discover)
    if scorer is None:
        from .scoring import load_model
        scorer = load_model(options.model, options.threshold, runtime=options.runtime)
    with closing(make_engine(options.engine, scorer, options.sample)) as engine:
        if videos:
            engine.prepare()
        yield from engine.run(videos)


def scan(paths, options: ScanOptions | None = None, **keywords) -> list[VideoResult]:
    """Screen videos and return all results (see `iter_scan` for the arguments)."""
    return list(iter_scan(paths, options, **keywords))


def scan_incremental(paths, options: ScanOptions | None = None, *, scorer=None,
                     discover: bool = True, meta: dict | None = None, on_plan=None,
                     on_result=None, started: float | None = None, **keywords):
    """Scan only what changed since the last run and rewrite the report `out` atomically with
    every current result (see screener.state). Returns a state.RunSummary.

    Keywords, besides iter_scan's: the report (`out`, `fmt`, `frames_out`, `html`,
    `details`: options.ReportOptions; no report by default) and the state (`state`, the file, default
    `<out>.state.sqlite` and required when out is "-"; `rescan`, `settle_s`, `keep_missing`,
    `allow_empty`: options.StateOptions). `meta`: the report's header (default: the model and
    the sampling). on_plan(n): called with the number of videos to scan; on_result(result)
    after each. `started`: time.monotonic() when the scan began, the start of its elapsed
    time; default: now.
    Raises OutputConflict when the report, frames CSV, page or state is one of the videos,
    the model or one another; StateLocked when another scan holds the state, StateError when
    it is unusable, OSError when the state or the report cannot be written (ENOSPC: the disk
    is full); ScanInterrupted (a KeyboardInterrupt carrying the RunSummary) when interrupted,
    after the report was rewritten.
    """
    from .run import scan as run
    from .state import ScanInterrupted
    keywords.setdefault("out", None)  # no report unless named ("-": standard output)
    options, report, state = from_keywords(options=options, with_report=True, with_state=True,
                                           **keywords)
    state = state.where(report)
    if state is None:
        raise ValueError("scan_incremental needs a state file or a report file (a report "
                         "that is a stream, such as /dev/null, keeps no state beside it)")
    outcome = run(paths, options, report, state, scorer=scorer, discover=discover, meta=meta,
                  on_plan=on_plan, on_result=on_result, started=started)
    if outcome.interrupted:
        raise ScanInterrupted(outcome.incremental)
    return outcome.incremental
