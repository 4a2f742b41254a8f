"""One scan run, whatever writes it: videos -> an engine -> one loop -> a sink.

`scan` is the one way a scan that writes reports is set up, for the CLI and
`screener.scan_incremental` alike: find the videos, check the outputs against them and one
another, load the model, run, write the visual report. `run_scan` is its loop: the sink says
which videos to scan, the engine computes their results, the sink writes each one as it
arrives and the reports at the end, also when the run is interrupted (a KeyboardInterrupt: the
CLI turns signals into one). Two sinks: `StreamSink` (no state: rows stream into the report as
videos finish) and `state.StateSink` (the incremental scan). The outcome (`ScanOutcome`)
carries what the summary line and the exit code are made from.
"""
from __future__ import annotations

import json
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
        from .heatmaps import explainer
        from .html_report import write_html
        c = self.collector
        return write_html(path, c.results, meta=self.meta, media=c.media(),
                          explain=explainer(model, self.meta), details=c.details,
                          elapsed_s=self.elapsed_s, complete=self.complete)

    def close(self, *exc) -> None:
        self._files.__exit__(*(exc or (None, None, None)))  # an error discards them


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
    """The sink for these options: the incremental one when there is a state (its path
    worked out: `StateOptions.where`)."""
    meta = report_header(scorer.card, options.sample) if meta is None else meta
    if state is None:
        return StreamSink(report, meta)
    from .state import StateSink
    return StateSink(report, state, model_id=scorer.card.identity,
                     options=json.dumps(options.sample.key(), sort_keys=True), meta=meta,
                     read_timeout_s=options.engine.video_timeout_s)


def scan(paths, options: ScanOptions, report: ReportOptions, state: StateOptions | None = None,
         *, scorer=None, discover: bool = True, log_file=None, meta: dict | None = None,
         on_found: Callable[[list[str]], None] | None = None, on_plan=None, on_result=None,
         started: float | None = None) -> ScanOutcome:
    """A whole scan into reports, the one way it is set up: find the videos in `paths`
    (`discover=False`: they are the files), check the outputs (`report`'s, the state's,
    `log_file`) against them, the model and one another before anything is read, then
    `on_found(videos)`, load the model (unless `scorer` is one already loaded), run, and write
    the visual report. `state`: the incremental scan's, its path worked out
    (`StateOptions.where`); None: no state, rows stream.
    Raises InputError (nothing to scan), OutputConflict, ModelError, StateLocked, StateError,
    and OSError when an output cannot be written (naming it; ENOSPC: the disk is full)."""
    from .discover import listed
    from .outputs import check_outputs
    outputs = scan_outputs(report, state, log_file)
    videos = listed(paths, discover, state is not None and state.allow_empty,
                    [path for _, path in outputs])
    held = scorer.card.path if scorer is not None else options.model
    check_outputs(outputs, scan_inputs(videos, held, with_model=held != ""))
    if on_found:
        on_found(videos)
    if scorer is None:  # the network itself loads only if something needs scoring
        from .scoring import load_model
        scorer = load_model(options.model, options.threshold, runtime=options.runtime)
    return scan_reports(videos, scorer, options, report, state, meta=meta, on_plan=on_plan,
                        on_result=on_result, started=started)


def scan_reports(videos: list[str], scorer, options: ScanOptions, report: ReportOptions,
                 state: StateOptions | None = None, *, meta: dict | None = None, engine=None,
                 on_plan=None, on_result=None, started: float | None = None) -> ScanOutcome:
    """Scan `videos` (files, as discovered, outputs checked) into the reports `report` names,
    keeping `state` (None: no state), then write the visual report when asked. `engine`: one
    already made (default: `options.engine`'s, closed at the end)."""
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


def scan_outputs(report: ReportOptions, state: StateOptions | None = None, log_file=None) -> list:
    """Every file a scan writes, named by its role (outputs.check_outputs): the report,
    frames CSV, visual report, log file, and the state with its side files."""
    from .state import state_outputs
    named = [("the report", report.out), ("the frames CSV", report.frames_out),
             ("the visual report", report.html), ("the log file", log_file)]
    return named + (state_outputs(state.path) if state is not None else [])


def scan_inputs(videos: list[str], model=None, with_model: bool = True) -> list:
    """Every file a scan reads, named: the videos, the model file (default: the shipped one)
    and its card."""
    from .scoring import model_inputs
    return [*(("the input", v) for v in videos), *(model_inputs(model) if with_model else [])]
