"""One scan run, whatever writes it: videos -> an engine -> one loop -> a sink.

`run_scan` is the loop every scan that writes reports goes through (the CLI's and
`screener.scan_incremental`): the sink says which videos to scan, the engine computes their
results, the sink writes each one as it arrives and the reports at the end, also when the run
is interrupted. Two sinks: `StreamSink` (no state: rows stream into the report as videos
finish) and `state.StateSink` (the incremental scan). `scan_reports` adds the engine and the
visual report around it; the outcome (`ScanOutcome`) carries what the summary line and the
exit code are made from.
"""
from __future__ import annotations

import signal
import sys
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass
from typing import Callable, Iterable

from .engines import make_engine
from .files import atomic_write
from .options import ReportOptions, ScanOptions, StateOptions
from .report import FramesWriter, ReportWriter, plural, report_header
from .verdict import Summary, VideoResult


@dataclass
class ScanOutcome:
    report: Summary          # the counts of the report's rows
    videos: int              # videos found (the run's inputs)
    elapsed_s: float         # from the run's start until its last row was known
    interrupted: bool = False
    incremental: object = None  # state.RunSummary when the scan kept a state
    html: dict | None = None    # the visual report's figures (bytes, details) when written
    out: str | None = None      # where the report went ("-": standard output)

    def summary_line(self, elapsed_s: float | None = None) -> str:
        """"3 videos: 1 fake, 1 real, 0 no face, 1 error, 1 verdict on low evidence in 2.1 s",
        then what an incremental run did, then where the report is. `elapsed_s`: the time to
        say (the CLI: the whole command's, the visual report included); default: the run's."""
        r, s = self.report, self.incremental
        low = f", {plural(r.low_evidence, 'verdict')} on low evidence" if r.low_evidence else ""
        line = (f"{plural(r.videos, 'video')}: {r.fake} fake, {r.real} real, "
                f"{r.no_face} no face, {plural(r.errors, 'error')}{low}")
        if s is not None and r.missing:
            line += f", {r.missing} missing"
        line += f" in {self.elapsed_s if elapsed_s is None else elapsed_s:.1f} s"
        if s is not None:
            line += (f"; scanned {s.scanned}, reused {s.reused}, deferred {s.deferred}"
                     + (f", dropped {s.dropped}" if s.dropped else "")
                     + (f", {s.unrecorded} changed while scanned" if s.unrecorded else ""))
        return line + ("" if self.out in (None, "-") else f"; report: {self.out}")


    def interrupted_line(self) -> str:
        """What an interrupted run kept, and where."""
        where, s = ("" if self.out in (None, "-") else f" in {self.out}"), self.incremental
        if s is None:
            return (f"interrupted after {self.report.videos} of {plural(self.videos, 'video')}; "
                    f"their rows are kept{where}")
        return (f"interrupted after scanning {plural(s.scanned, 'video')}; every finished "
                "video is recorded" + (where and f" and{where}"))


class StreamSink:
    """Writes a scan without state. Rows stream into the report and the frames CSV as each
    video finishes, into temporary files beside them that become the outputs when the scan
    ends, also when it is interrupted: a report is whole or absent, never cut mid-row (`out`
    "-" streams to standard output). Keeps what the visual report needs, with bounded memory
    (`html_report.Collector`)."""

    def __init__(self, report: ReportOptions, meta: dict | None = None):
        self.report, self.meta = report, meta
        self._files = ExitStack()
        self.collector = None
        if report.html:
            from .html_report import Collector
            self.collector = Collector(report.details)
        self.writer = self.frames = None
        self.elapsed_s, self.complete = None, True

    def plan(self, videos: list[str]) -> list[str]:
        return videos

    def start(self) -> None:
        out = self.report.out
        stream = sys.stdout if self.report.to_stdout else self._files.enter_context(
            atomic_write(out))
        self.writer = ReportWriter(stream, self.report.fmt, self.meta)
        if self.report.frames_out:
            self.frames = FramesWriter(self._files.enter_context(
                atomic_write(self.report.frames_out)))

    def add(self, r: VideoResult) -> None:
        self.writer.write(r)
        if self.frames:
            self.frames.write(r)
        if self.collector:
            self.collector.add(r)

    def finish(self, interrupted: bool, elapsed_s: float) -> Summary:
        self.elapsed_s, self.complete = elapsed_s, not interrupted
        self.writer.close(complete=not interrupted, extra={"elapsed_s": round(elapsed_s, 2)})
        self._files.close()  # the temporary files become the outputs
        return self.writer.summary

    def write_html(self, path, *, details: int | None = None, model=None) -> dict:
        from .html_report import write_html
        c = self.collector
        return write_html(path, c.results, meta=self.meta, media=c.media(), model=model,
                          details=c.details, elapsed_s=self.elapsed_s, complete=self.complete)

    def close(self, *exc) -> None:
        self._files.__exit__(*(exc or (None, None, None)))  # an error discards them


class Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt, and are remembered: one that
    library code swallows (TensorFlow and mediapipe run Python callbacks where a bare except
    can catch it) is raised again at the next `check()`, after the next finished video."""

    def __enter__(self):
        self.seen = False
        self._previous = {s: signal.signal(s, self._on_signal)
                          for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _on_signal(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def run_scan(videos: Iterable[str], engine, sink, *,
             on_plan: Callable[[int], None] | None = None,
             on_result: Callable[[VideoResult], None] | None = None,
             started: float | None = None) -> ScanOutcome:
    """The one loop: `sink.plan` picks the videos to scan (`on_plan(how many)`), `engine`
    computes them in order, `sink.add` writes each result (then `on_result(result)`), and
    `sink.finish` writes what remains. Ctrl-C (KeyboardInterrupt) during the loop ends it:
    what is done is written, and the outcome says `interrupted`. `started`: time.monotonic()
    when the run began (the CLI: when the command started); default: now."""
    started = time.monotonic() if started is None else started
    videos = list(videos)
    try:
        todo = sink.plan(videos)
        if on_plan:
            on_plan(len(todo))
        if todo:
            prepare = getattr(engine, "prepare", None)
            if prepare is not None:
                prepare()  # a bad model fails here, before any video is read
        sink.start()
        interrupted = False
        try:
            if todo:
                with closing(iter(engine.run(todo))) as results:  # stops its workers at once
                    for r in results:
                        sink.add(r)
                        if on_result:
                            on_result(r)
        except KeyboardInterrupt:
            interrupted = True
        elapsed = time.monotonic() - started
        summary = sink.finish(interrupted, elapsed)
    except BaseException:
        sink.close(*sys.exc_info())
        raise
    sink.close()
    return ScanOutcome(report=summary, videos=len(videos), elapsed_s=elapsed,
                       interrupted=interrupted, incremental=getattr(sink, "run", None))


def make_sink(report: ReportOptions, state: StateOptions | None, scorer, options: ScanOptions,
              meta: dict | None = None):
    """The sink for these options: the incremental one when there is a state."""
    meta = report_header(scorer.card, options.sample) if meta is None else meta
    if state is None:
        return StreamSink(report, meta)
    from .state import StateSink
    return StateSink(report, state, model_id=scorer.card.identity,
                     options=options.sample.key(), meta=meta,
                     read_timeout_s=options.engine.video_timeout_s)


def scan_reports(videos: list[str], scorer, options: ScanOptions, report: ReportOptions,
                 state: StateOptions | None = None, *, meta: dict | None = None, engine=None,
                 on_plan=None, on_result=None, started: float | None = None) -> ScanOutcome:
    """Scan `videos` (files, as discovered) into the reports `report` names, keeping `state`
    (None: no state), then write the visual report when asked: the scan behind `screener
    scan`. `engine`: one already made (default: `options.engine`'s, closed at the end).
    Raises StateLocked, StateError, ModelError, and OSError when an output cannot be written
    (naming it; ENOSPC: the disk is full)."""
    sink = make_sink(report, state, scorer, options, meta)
    with closing(engine or make_engine(options.engine, scorer, options.sample)) as e:
        outcome = run_scan(videos, e, sink, on_plan=on_plan, on_result=on_result,
                           started=started)
    outcome.out = report.out
    if report.html:
        model = getattr(scorer, "loaded_model", None) or scorer.card.path
        if state is None:
            outcome.html = sink.write_html(report.html, details=report.details, model=model)
        else:  # from the state just written: the page `screener report` rebuilds
            from .html_report import rebuild
            outcome.html = rebuild(report.html, state=sink.path, model=model,
                                   model_sha=scorer.card.sha256 or None, details=report.details)
    return outcome


def scan_outputs(report: ReportOptions, state_path=None, state_named: bool = True,
                 log_file=None) -> list:
    """Every file a scan writes, named as the command line names it (outputs.check_outputs):
    the report, frames CSV, page, log file, and the state with its side files."""
    from .state import state_outputs
    named = [("--out", report.out), ("--frames-out", report.frames_out),
             ("--html", report.html), ("--log-file", log_file)]
    if state_path is not None:
        named += state_outputs(state_path, "--state" if state_named else "the state file")
    return named


def scan_inputs(videos: list[str], model=None, with_model: bool = True) -> list:
    """Every file a scan reads, named: the videos, the model file (default: the shipped one)
    and its card."""
    from .scoring import model_inputs
    return [*(("the input", v) for v in videos), *(model_inputs(model) if with_model else [])]
