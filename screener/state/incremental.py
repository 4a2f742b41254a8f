"""The incremental scan's sink: what `run.run_scan` writes to when the scan keeps a state.

It holds the state's lock for the whole run, plans (`plan.plan`: scan, reuse, defer, drop),
records each finished video in its own transaction as it arrives, then rewrites the whole
report (and frames CSV) atomically, in a stable order, with the report writers of a streaming
scan (`report.ReportWriter`). Nothing in the report depends on the clock, so an unchanged rerun
writes the same bytes; a run that changes nothing keeps the record (LAST_RUN, the elapsed time
the JSON report and the HTML page show) of the run that made its rows.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..files import atomic_write, remove_temporaries
from ..options import ReportOptions, StateOptions
from ..report import FramesWriter, ReportWriter
from ..sources import forget_listings, stat
from ..verdict import ERROR, MISSING, Summary, VideoResult
from .plan import Plan, plan_files
from .schema import LAST_RUN, at_path
from .store import ScanState

log = logging.getLogger(__name__)


@dataclass
class ReportSummary(Summary):
    """The report's summary in an incremental scan: kept rows of vanished files apart."""
    missing: int = 0

    def add(self, r: VideoResult) -> None:
        if r.status == MISSING:
            self.videos += 1
            self.missing += 1
        else:
            super().add(r)


@dataclass
class RunSummary:
    """What an incremental run did. `report` counts the rows of the report it wrote."""
    report: ReportSummary
    scanned: int = 0      # computed on this run
    reused: int = 0       # unchanged, taken from the state
    deferred: int = 0     # still being written: left for the next run
    missing: int = 0      # stored rows kept with status missing
    dropped: int = 0      # stored rows of vanished files, forgotten
    unrecorded: int = 0   # changed while being scanned: rescanned next run
    interrupted: bool = False
    elapsed_s: float = 0.0  # this run's: from its start until every row was known
    results: list[VideoResult] = field(default_factory=list, repr=False)


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM made an interrupt) during an incremental run, after the results so
    far were recorded and the report rewritten. `.summary` says what was done."""

    def __init__(self, summary: RunSummary):
        super().__init__("interrupted")
        self.summary = summary


class StateSink:
    """Writes an incremental scan: see the module. `state.path` is the file (worked out by
    `StateOptions.where`). `model_id` (ModelCard.identity) and `options` (the sampling options'
    key, `SampleOptions.key()` as JSON) say what a stored row was computed with: a row
    computed otherwise is scanned again. `meta` is the report's header. `read_timeout_s`
    bounds each read of a file while planning (see plan.fingerprint)."""

    def __init__(self, report: ReportOptions, state: StateOptions, *, model_id: str,
                 options: str, meta: dict | None = None, read_timeout_s: float | None = None):
        self.path = Path(state.path)  # worked out: StateOptions.where
        self.report, self.opts = report, state
        self.model_id, self.options, self.meta = model_id, options, meta
        self.read_timeout_s = read_timeout_s
        self.state: ScanState | None = None
        self.plan_: Plan | None = None
        self.done: dict[str, VideoResult] = {}
        self.damaged: list[bytes] = []  # keys of unreadable stored rows not scanned now
        self.run = RunSummary(report=ReportSummary())

    def plan(self, videos: list[str]) -> list[str]:
        out = self.report.out
        if self.report.to_file and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
            raise FileNotFoundError(2, "its folder does not exist", os.fspath(out))
        self.state = ScanState(self.path, reset_unusable=self.opts.rescan)
        p = self.plan_ = plan_files(
            videos, self.state.stored(), self.state.pending(), model_id=self.model_id,
            options=self.options, settle_s=self.opts.settle_s, rescan=self.opts.rescan,
            keep_missing=self.opts.keep_missing, fresh=self.state.created,
            read_timeout_s=self.read_timeout_s)
        forget_listings()  # planned: what the listing said is not used again
        # Damaged rows (ScanState.stored): replaced when their file is scanned, else forgotten.
        scanned = {f.key for f in p.files.values()}
        self.damaged = [k for k in self.state.damaged if k not in scanned]
        self.state.keep_plan(p)
        self.run.reused = len(p.reuse) - len([d for d in p.deferred if d in p.reuse])
        self.run.deferred = len(p.deferred)
        return p.scan

    def start(self) -> None:
        pass  # the report is written whole at the end

    def add(self, r: VideoResult) -> None:
        pf = self.plan_.files.get(r.path)
        if pf is None:
            raise RuntimeError(f"engine returned a result for {r.path!r}, which it was not "
                               "asked to scan")
        now = stat(r.path, fresh=True) if pf.stat is not None else None  # an object: a HEAD
        if pf.stat is not None and now != pf.stat:
            # Read while it changed: the result may be of half a file. Deleted: it drops out,
            # as a file gone before the run would; its error row, if any, said so once.
            if now is not None:
                log.warning("%s changed while it was scanned; it will be rescanned", r.path)
            elif r.status != ERROR:
                log.warning("%s was deleted while it was scanned; it is left out of the report",
                            r.path)
            self.run.unrecorded += 1
            return
        if pf.stat is not None:
            self.state.record(pf.key, pf.stat, pf.fingerprint, self.model_id, self.options, r)
        # The thumbnails are stored; the kept copy goes without them.
        self.done[r.path] = replace(r, media=None) if pf.stat is not None else r
        self.run.scanned += 1

    def finish(self, interrupted: bool, elapsed_s: float) -> ReportSummary:
        """Forget the dropped files, then write the report and frames CSV of every current
        row (also when interrupted: "complete": false). Returns the report's counts; `run`
        says what the run did."""
        p, s = self.plan_, self.run
        s.interrupted, s.elapsed_s = interrupted, round(elapsed_s, 2)
        self.state.forget([*p.dropped, *self.damaged])
        s.dropped = len(p.dropped)
        results = [self.done[path] if path in self.done else at_path(p.reuse[path], path)
                   for path in p.order if path in self.done or path in p.reuse]
        missing = sorted((m.gone() for m in p.missing), key=lambda r: r.path)
        results.extend(missing)
        s.missing, s.results = len(missing), results
        run = self._last_run()
        extra = {"elapsed_s": run["elapsed_s"]}
        if self.report.to_stdout:
            self._write(sys.stdout, results, extra)
        elif self.report.out is None:  # no report (the Python API): its counts only
            for r in results:
                s.report.add(r)
        else:
            # Under the lock no other run of this report can be writing: what is there was left
            # by a run killed while writing.
            remove_temporaries([self.report.out, *filter(None, [self.report.frames_out])])
            with atomic_write(self.report.out) as f:
                self._write(f, results, extra)
        if self.report.frames_out:
            with atomic_write(self.report.frames_out) as f:
                frames = FramesWriter(f)
                for r in results:
                    frames.write(r)
        return s.report

    def _write(self, stream, results: list[VideoResult], extra: dict) -> None:
        w = ReportWriter(stream, self.report.fmt, self.meta, summary=self.run.report)
        for r in results:
            w.write(r)
        w.close(complete=not self.run.interrupted, extra=extra)

    def _last_run(self) -> dict:
        """Record this run (LAST_RUN) unless it changed nothing: then the record of the run
        that made these rows stays, and is returned."""
        s = self.run
        rows = hashlib.sha256(json.dumps([r.row() for r in s.results],
                                         default=str).encode()).hexdigest()
        run = json.loads(json.dumps({"meta": self.meta or {}, "finished_at": time.time(),
                                     "elapsed_s": s.elapsed_s, "complete": not s.interrupted,
                                     "rows": rows}, default=str))
        try:
            before = json.loads(self.state.get_meta(LAST_RUN) or "{}")
        except ValueError:
            before = {}
        if not isinstance(before, dict):  # damaged: made again
            before = {}
        unchanged = (s.scanned == 0 and not s.unrecorded and not s.interrupted
                     and before.get("rows") == rows and before.get("meta") == run["meta"]
                     and before.get("complete", True))
        if unchanged and "elapsed_s" in before:
            return before
        self.state.set_meta(LAST_RUN, json.dumps(run))
        return run

    def close(self, *exc) -> None:
        if self.state is not None:
            self.state.close()
            self.state = None
