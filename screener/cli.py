"""The `screener` command: option parsing, progress, messages and exit codes. Nothing else.

Exit codes (also in README "Scanning"):
  0  the scan finished (videos that could not be read are rows with status error)
  1  --fail-on-fake was given and at least one video is FAKE
  2  usage error: a bad option, a PATH that does not exist, no video found, or an output
     that is an input or another output
  3  the model could not be loaded
  4  an output (report, --frames-out, --html, --log-file) could not be written; a full disk,
     under the state too, says "no space left on device"
  5  another scan holds the lock on the same state file (README "Running from cron")
  6  the state file is unusable (corrupt, foreign or newer) or cannot be written
     (read-only): --rescan or another --state
  130  interrupted (Ctrl-C or SIGTERM); the rows written so far are kept
  141  --out - and the reader of the report went away (`... --out - | head`)
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from contextlib import ExitStack

import click

from .faces import MIN_FACE_PX, MIN_SCORE
from .report import plural
from .logs import EscapingFormatter, TerminalFormatter, printable, set_terminal_level

EXIT_OK, EXIT_FAKE, EXIT_USAGE, EXIT_MODEL, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_LOCKED, EXIT_STATE = 5, 6
# The reader of --out - went away (`screener scan DIR --out - | head`): stop quietly, with the
# status a shell gives a command killed by SIGPIPE.
EXIT_PIPE = 141

log = logging.getLogger("screener")


class _TqdmHandler(logging.Handler):
    """Log lines that do not break a progress bar (tqdm.write prints above it)."""

    def emit(self, record):
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never end the scan
            self.handleError(record)


def _setup_logging(quiet: bool, verbose: int) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = _TqdmHandler()
    handler.setFormatter(TerminalFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    set_terminal_level(level)  # worker processes print at this level too
    for noisy in ("absl", "tensorflow", "keras", "h5py"):  # library chatter, even at -vv
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


SUMMARY_LOGGER = "screener.summary"


class _LogFile(logging.FileHandler):
    """--log-file. It is opened only once the outputs are checked (it must not be an input):
    lines logged before that wait. A failed write is remembered, not printed as a traceback:
    the run then says so once and ends with EXIT_OUTPUT."""

    def __init__(self, path: str):
        super().__init__(path, encoding="utf-8", delay=True)
        self.waiting: list | None = []
        self.failure: OSError | None = None

    def emit(self, record):
        if self.waiting is not None:
            self.waiting.append(record)
        else:
            super().emit(record)

    def open_now(self) -> None:
        """Open the file (raises OSError) and write the lines that waited."""
        self.stream = self._open()
        waiting, self.waiting = self.waiting, None
        for record in waiting:
            self.emit(record)

    def handleError(self, record):
        failure = sys.exc_info()[1]
        if isinstance(failure, OSError):
            self.failure = self.failure or failure
        else:  # a bad log call, not a failed write: logging's own report
            super().handleError(record)


def _add_log_file(log_file: str) -> None:
    """--log-file: one line per video and the summary at INFO, whatever the terminal shows."""
    root = logging.getLogger()
    for h in root.handlers:  # the terminal keeps its level; the summary is echoed there
        h.setLevel(root.level)
        h.addFilter(lambda record: record.name != SUMMARY_LOGGER)
    file_handler = _LogFile(log_file)
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(file_handler)
    root.setLevel(min(root.level, logging.INFO))


def _log_file() -> "_LogFile | None":
    return next((h for h in logging.getLogger().handlers if isinstance(h, _LogFile)), None)


def _open_log_file() -> int | None:
    """Open --log-file (if any) once the outputs are checked; EXIT_OUTPUT if it cannot be."""
    handler = _log_file()
    if handler is not None and handler.waiting is not None:
        try:
            handler.open_now()
        except OSError as e:
            _error(f"cannot write the log file {handler.baseFilename}: {e.strerror or e}")
            return EXIT_OUTPUT
    return None


def _log_file_failed(code: int) -> int:
    """The exit code once the log file's fate is known: a write that failed is an output
    that could not be written."""
    handler = _log_file()
    failure = handler.failure if handler is not None else None
    if failure is None:
        return code
    _error(f"cannot write the log file {handler.baseFilename}: {failure.strerror or failure}")
    return EXIT_OUTPUT if code in (EXIT_OK, EXIT_FAKE) else code


def _summary(line: str, quiet: bool) -> None:
    """The run's summary line: on stderr unless quiet, and in the --log-file."""
    logging.getLogger(SUMMARY_LOGGER).info(line)
    if not quiet:
        click.echo(printable(f"screener: {line}"), err=True)


class _Interrupts:
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


# When the command started: the one clock of the elapsed time a scan reports (summary line,
# JSON report, HTML page), which ends when the last row is written.
STARTED = "screener.started"


@click.group()
@click.version_option(package_name="screener")
@click.pass_context
def main(ctx):
    """screener: batch deepfake screening of videos with MesoNet."""
    ctx.meta[STARTED] = time.monotonic()


def _started() -> float:
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(STARTED, time.monotonic()) if ctx is not None else time.monotonic()


def _counts(s) -> str:
    """A summary's counts: "3 videos: 1 fake, 1 real, 0 no face, 1 error, 1 verdict on low
    evidence" (the report's note column says which, and on how many frames)."""
    low = f", {plural(s.low_evidence, 'verdict')} on low evidence" if s.low_evidence else ""
    return (f"{plural(s.videos, 'video')}: {s.fake} fake, {s.real} real, {s.no_face} no face, "
            f"{plural(s.errors, 'error')}{low}")


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", "-o", default="-", metavar="FILE",
              help="Report file (default: standard output).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default=None,
              help="Report format (default: from the --out extension, else csv).")
@click.option("--frames-out", metavar="FILE", help="Also write one CSV row per scored face.")
@click.option("--frames", type=click.IntRange(min=1), default=32, show_default=True,
              help="Frames to sample per video, spread evenly.")
@click.option("--every", "every_s", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Sample one frame every SECONDS instead of --frames.")
@click.option("--all-faces", is_flag=True, help="Score every face of a frame, not only the largest.")
@click.option("--min-face", type=click.IntRange(min=1), default=None, metavar="PX",
              help=f"Smallest face width scored, in frame pixels (default {MIN_FACE_PX}); "
                   "smaller faces are counted as too small.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Face crops per model call.")
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="Model file: a screener .keras model or published MesoNet weights "
                   "(default: the shipped model).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="FAKE when fake_score >= this (default: the model card's threshold).")
@click.option("--fail-on-fake", is_flag=True, help="Exit with status 1 when any video is FAKE.")
@click.option("--workers", type=click.IntRange(min=0), default=None, metavar="N",
              help="Processes that decode and find faces  [default: one per core; 0: none, "
                   "all in the main process]")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: a Ray cluster (README "
                   "\"Running on a Ray cluster\"; needs the ray extra).")
@click.option("--address", metavar="ADDR", default=None,
              help="With --engine ray: the cluster to join (default: RAY_ADDRESS, else a "
                   "local Ray for this scan).")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto",
              show_default=True, help="Where the model runs (gpu: fail unless TensorFlow sees one).")
@click.option("--video-timeout", "video_timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=None, metavar="SECONDS",
              help="Stop reading a video after SECONDS (a stuck decoder, a hung mount; also "
                   "while planning an incremental scan); it becomes an error row and the scan "
                   "goes on. Needs workers (local engine) or Ray. [default: no limit]")
@click.option("--quiet", "-q", is_flag=True, help="Errors only: no progress, no summary.")
@click.option("--verbose", "-v", count=True, help="One line per video (-vv: debug).")
@click.option("--state", metavar="FILE", default=None,
              help="Incremental-scan state: rescan only new or changed files "
                   "(default with --out: FILE.state.sqlite next to the report).")
@click.option("--no-state", is_flag=True,
              help="Keep no state: scan everything, stream the report row by row.")
@click.option("--rescan", is_flag=True,
              help="Scan every file again (and set an unusable state file aside).")
@click.option("--settle", "settle_s", type=click.FloatRange(min=0), default=30.0,
              show_default=True, metavar="SECONDS",
              help="Leave files changed less than SECONDS ago for the next run.")
@click.option("--keep-missing", is_flag=True,
              help="Keep the rows of files that disappeared, with status missing.")
@click.option("--allow-empty", is_flag=True,
              help="With a state (cron): folders that exist but hold no video are not an "
                   "error; the report empties and the exit code is 0.")
@click.option("--log-file", metavar="FILE",
              help="Append one line per scanned video and the summary to FILE.")
@click.option("--html", "html", metavar="FILE", default=None,
              help="Also write the visual report: one self-contained HTML file (README "
                   "\"The visual report\").")
@click.option("--details", type=click.IntRange(min=0), default=None, metavar="N",
              help="Videos shown in detail in the --html report: the N highest scores  "
                   "[default: every FAKE one and the top of the table, 100 to 500]")
def scan(paths, out, fmt, frames_out, frames, every_s, all_faces, min_face, batch_size, model,
         threshold, fail_on_fake, workers, device, video_timeout_s, quiet, verbose, state, no_state, rescan,
         settle_s, keep_missing, allow_empty, log_file, html=None, details=None,
         engine="local", address=None):
    """Screen videos for deepfakes and write one row per video.

    PATHS are video files, folders (searched recursively) and glob patterns.

    \b
    Exit codes: 0 finished (unreadable videos are rows with status error)
                1 --fail-on-fake and a video is FAKE
                2 usage: bad option, missing PATH, no video found, an output that is
                  an input or another output
                3 the model could not be loaded
                4 an output could not be written (a full disk: no space left on device)
                5 another scan holds the state lock
                6 the state file is unusable or read-only (--rescan, or another --state)
              130 interrupted (the rows written so far are kept)
              141 --out - and the reader of the report went away
    """
    if state and no_state:
        raise click.UsageError("--state and --no-state exclude each other")
    if address and engine != "ray":
        raise click.UsageError("--address needs --engine ray")
    if allow_empty and (no_state or not (state or str(out) != "-")):
        raise click.UsageError("--allow-empty needs a state (--out FILE or --state FILE)")
    _setup_logging(quiet, verbose)
    if log_file:
        _add_log_file(log_file)  # opened once the outputs are checked (_prepare)
    from .errors import EngineUnavailable, ScreenerError
    try:
        from .device import select_device
        select_device(device)
    except ScreenerError as e:
        _error(str(e))
        sys.exit(EXIT_MODEL)
    common = dict(out=out, fmt=fmt, frames_out=frames_out, frames=frames, every_s=every_s,
                  all_faces=all_faces, min_face=min_face, batch_size=batch_size, model=model, threshold=threshold,
                  fail_on_fake=fail_on_fake, quiet=quiet, workers=workers, log_file=log_file)
    if video_timeout_s is not None:
        if engine == "local" and workers == 0:
            raise click.UsageError("--video-timeout needs worker processes (--workers 1 or more)")
        common.update(video_timeout_s=video_timeout_s)
    if html:
        common.update(html=html, details=details)
    if engine != "local":
        from .engines import check_engine
        try:
            check_engine(engine)
        except ScreenerError as e:
            _error(str(e))
            sys.exit(EXIT_USAGE)
        common.update(engine=engine, address=address)
    try:
        if not no_state and (state or str(out) != "-"):  # README "Running from cron"
            code = run_incremental_scan(paths, state=state, rescan=rescan, settle_s=settle_s,
                                        keep_missing=keep_missing, allow_empty=allow_empty,
                                        **common)
        else:
            code = run_scan(paths, **common)
    except KeyboardInterrupt:  # before the first video (finding files, loading the model)
        _error("interrupted")
        code = EXIT_INTERRUPTED
    except EngineUnavailable as e:  # --engine ray: the cluster cannot be joined
        _error(str(e))
        code = EXIT_USAGE
    sys.exit(_log_file_failed(code))


def _error(message: str) -> None:
    click.echo(f"screener: error: {printable(message)}", err=True)


def _output_mode(out, fmt, quiet):
    """(report format, report on stdout?, a line per video on stdout?, a progress bar?)"""
    to_stdout = str(out) == "-"
    fmt = fmt or ("json" if str(out).lower().endswith(".json") else "csv")
    show_rows = not to_stdout and not quiet and sys.stdout.isatty()
    return fmt, to_stdout, show_rows, not quiet and sys.stderr.isatty()


def _outputs(out, frames_out, html, log_file, state=None, state_named=False) -> list:
    """Every file a scan writes, named as the user named it (outputs.check_outputs)."""
    from .state import state_outputs
    named = [("--out", out), ("--frames-out", frames_out), ("--html", html),
             ("--log-file", log_file)]
    if state is not None:
        named += state_outputs(state, "--state" if state_named else "the state file")
    return named


def _prepare(paths, find, load, model, threshold, sampling, outputs):
    """Find the videos, make sure no output is an input or another output, open the log file
    and load the model, as both scan paths do: (videos, scorer, options, report header), or
    the exit code after saying what went wrong."""
    from .discover import InputError
    from .errors import ModelError, OutputConflict
    from .outputs import check_outputs
    from .scoring import model_inputs
    try:
        videos = find(paths)
    except InputError as e:
        _error(str(e))
        return EXIT_USAGE
    try:  # before anything is read or written
        check_outputs(outputs, [*(("the input", v) for v in videos), *model_inputs(model)])
    except OutputConflict as e:
        _error(str(e))
        return EXIT_USAGE
    code = _open_log_file()
    if code is not None:
        return code
    if not videos:
        log.warning("no video in %s: the report lists none", ", ".join(map(str, paths)))
    try:
        scorer = load(model, threshold)
    except ModelError as e:
        _error(str(e))
        return EXIT_MODEL
    options = _sample_options(*sampling)
    return videos, scorer, options, _report_meta(scorer.card, options)


def run_scan(paths, *, out="-", fmt=None, frames_out=None, frames=32, every_s=None,
             all_faces=False, min_face=None, batch_size=256, model=None, threshold=None, fail_on_fake=False,
             quiet=False, workers=None, video_timeout_s=None, html=None, details=None,
             engine="local",
             address=None, log_file=None) -> int:
    """The scan command's body; returns the exit code."""
    from .api import iter_scan
    from .discover import find_videos
    from .report import ReportWriter, FramesWriter, atomic_write
    from .scoring import load_for_scan

    started = _started()
    fmt, to_stdout, show_rows, show_bar = _output_mode(out, fmt, quiet)
    ready = _prepare(paths, find_videos, load_for_scan, model, threshold,
                     (frames, every_s, all_faces, min_face),
                     _outputs(out, frames_out, html, log_file))
    if isinstance(ready, int):
        return ready
    videos, scorer, options, meta = ready

    interrupted = False
    collector = None
    if html:
        from .html_report import Collector
        collector = Collector(details)
    try:
        # Rows stream into temporary files beside the outputs, renamed when the scan ends
        # (also when interrupted): a report is whole or absent, never cut mid-row.
        with ExitStack() as stack:
            interrupts = stack.enter_context(_Interrupts())
            stream = sys.stdout if to_stdout else stack.enter_context(atomic_write(out))
            report = ReportWriter(stream, fmt, meta)
            face_rows = None
            if frames_out:
                face_rows = FramesWriter(stack.enter_context(atomic_write(frames_out)))
            from tqdm import tqdm
            bar = stack.enter_context(tqdm(total=len(videos), unit="video",
                                           disable=not show_bar, file=sys.stderr,
                                           dynamic_ncols=True))
            try:
                for r in iter_scan(videos, scorer=scorer, options=options,
                                   batch_size=batch_size, discover=False, workers=workers,
                                   engine=engine, address=address,
                                   video_timeout_s=video_timeout_s):
                    report.write(r)
                    if face_rows:
                        face_rows.write(r)
                    if collector:
                        collector.add(r)
                    if show_rows:
                        tqdm.write(_row_line(r), file=sys.stdout)
                    bar.update()
                    interrupts.check()
            except KeyboardInterrupt:
                interrupted = True
            elapsed = time.monotonic() - started
            report.close(complete=not interrupted, extra={"elapsed_s": round(elapsed, 2)})
    except OSError as e:  # a disk filled up or went away, a pipe's reader left
        if to_stdout and isinstance(e, BrokenPipeError):
            return _reader_gone()
        _error(f"cannot write {e.filename or out}: {e.strerror or e}")
        return EXIT_OUTPUT
    s = report.summary
    if collector and not _write_html(html, collector.results, meta=meta,
                                     media=collector.media(), model=scorer.model or scorer.card.path,
                                     details=collector.details, elapsed_s=elapsed,
                                     complete=not interrupted, quiet=quiet):
        return EXIT_OUTPUT
    if interrupted:
        _error(f"interrupted after {s.videos} of {plural(len(videos), 'video')}; their rows "
               "are kept" + ("" if to_stdout else f" in {printable(out)}"))
        return EXIT_INTERRUPTED
    where = "" if to_stdout else f"; report: {printable(out)}"
    _summary(f"{_counts(s)} in {elapsed:.1f} s{where}", quiet)
    return EXIT_FAKE if fail_on_fake and s.fake else EXIT_OK


def _reader_gone() -> int:
    """stdout's reader has gone: no message (nobody reads it), and none from Python either
    when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_PIPE


def _write_html(path, results, *, quiet=False, **kw) -> bool:
    """Write the visual report; False (after saying why) when it cannot be written."""
    from .html_report import write_html
    return _html_written(path, lambda: write_html(path, results, **kw), quiet)


def _html_written(path, write, quiet: bool) -> bool:
    """Run `write` (which returns the page's figures) and say what it wrote, or why not."""
    from .errors import StateError
    try:
        figures = write()
    except (StateError, ValueError) as e:
        _error(str(e))
        return False
    except OSError as e:
        _error(f"cannot write {printable(e.filename or path)}: {e.strerror or e}")
        return False
    if not quiet:
        click.echo(f"screener: visual report: {printable(path)} ({figures['bytes'] / 1e6:.1f} MB, "
                   f"{plural(figures['details'], 'video')} in detail)", err=True)
    return True


def _sample_options(frames, every_s, all_faces, min_face):
    from .pipeline import SampleOptions
    extra = {} if min_face is None else {"min_face": min_face}
    return SampleOptions(frames=frames, every_s=every_s, all_faces=all_faces, **extra)


def _report_meta(card, options) -> dict:
    """The report's header. Nothing here may depend on the clock: an unchanged incremental
    rerun must write the same bytes."""
    from . import __version__
    return {"screener": __version__,
            "model": {"name": card.name, "arch": card.arch, "threshold": card.threshold,
                      "sha256": card.sha256, "path": card.path, "metrics": card.metrics,
                      "limits": card.limits},
            "options": {"frames": options.frames, "every_s": options.every_s,
                        "all_faces": options.all_faces, "min_face": options.min_face}}


def run_incremental_scan(paths, *, out="-", fmt=None, frames_out=None, frames=32, every_s=None,
                         all_faces=False, min_face=None, batch_size=256, model=None,
                         threshold=None,
                         fail_on_fake=False, quiet=False, state=None, rescan=False,
                         settle_s=30.0, keep_missing=False, allow_empty=False, workers=None,
                         video_timeout_s=None,
                         html=None, details=None, engine="local", address=None,
                         log_file=None) -> int:
    """The scan command with a state file (api.scan_incremental); returns the exit code."""
    from tqdm import tqdm

    from .api import find_videos, find_videos_or_empty, scan_incremental
    from .errors import ModelError, StateError, StateLocked
    from .report import ReportWriter
    from .scoring import load_model_lazily
    from .state import ReportSummary, ScanInterrupted, default_state_path

    started = _started()
    fmt, to_stdout, show_rows, show_bar = _output_mode(out, fmt, quiet)
    # The lazy loader: TensorFlow only if a video needs scoring.
    # No video is a usage error, as for a plain scan, unless the caller says an empty drop
    # folder is normal (cron): then the report empties.
    find = find_videos_or_empty if allow_empty else find_videos
    named, state = state is not None, state or default_state_path(out)
    ready = _prepare(paths, find, load_model_lazily, model, threshold,
                     (frames, every_s, all_faces, min_face),
                     _outputs(out, frames_out, html, log_file, state, named))
    if isinstance(ready, int):
        return ready
    videos, scorer, options, meta = ready
    if not to_stdout and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        _error(f"cannot write {printable(out)}: its folder does not exist")
        return EXIT_OUTPUT

    def on_result(r):
        if show_rows:
            tqdm.write(_row_line(r), file=sys.stdout)
        bar.update()
        interrupts.check()

    with _Interrupts() as interrupts, tqdm(total=0, unit="video", disable=not show_bar,
                                           file=sys.stderr, dynamic_ncols=True) as bar:
        try:
            s = scan_incremental(
                videos, discover=False, out=None if to_stdout else out, state=state, fmt=fmt,
                rescan=rescan, settle_s=settle_s, keep_missing=keep_missing,
                frames_out=frames_out, meta=meta, scorer=scorer, workers=workers,
                options=options, engine=engine, address=address,
                video_timeout_s=video_timeout_s, check_outputs=False,  # _prepare did
                batch_size=batch_size, on_plan=lambda plan: bar.reset(total=len(plan.scan)),
                on_result=on_result, started=started)
        except StateLocked as e:
            _error(str(e))
            return EXIT_LOCKED
        except StateError as e:
            _error(str(e))
            return EXIT_STATE
        except ModelError as e:  # a .keras file that fails on first use
            _error(str(e))
            return EXIT_MODEL
        except ScanInterrupted as e:
            _error(f"interrupted after scanning {plural(e.summary.scanned, 'video')}; every "
                   "finished video is recorded" + ("" if to_stdout else f" and in {printable(out)}"))
            return EXIT_INTERRUPTED
        except OSError as e:
            _error(f"cannot write {e.filename or out}: {e.strerror or e}")
            return EXIT_OUTPUT
    if html:  # from the state just written: the same page `screener report` rebuilds
        ok = _rebuild_html(html, state=state,
                           model=scorer.model or scorer.card.path,
                           model_sha=scorer.card.sha256 or None, quiet=quiet,
                           details=details)
        if not ok:
            return EXIT_OUTPUT
    if to_stdout:  # --state without --out: the whole report, once, at the end
        try:
            report = ReportWriter(sys.stdout, fmt, meta)
            report.summary = ReportSummary()
            for r in s.results:
                report.write(r)
            report.close()
        except BrokenPipeError:
            return _reader_gone()
    r = s.report
    line = (_counts(r) + (f", {r.missing} missing" if r.missing else "")
            + f" in {s.elapsed_s:.1f} s; scanned {s.scanned}, reused {s.reused}, "
            f"deferred {s.deferred}" + (f", dropped {s.dropped}" if s.dropped else "")
            + (f", {s.unrecorded} changed while scanned" if s.unrecorded else "")
            + ("" if to_stdout else f"; report: {printable(out)}"))
    _summary(line, quiet)
    return EXIT_FAKE if fail_on_fake and r.fake else EXIT_OK


def _rebuild_html(html, *, quiet=False, **kw) -> bool:
    from .html_report import rebuild
    return _html_written(html, lambda: rebuild(html, **kw), quiet)


@main.command()
@click.option("--html", "html", metavar="FILE", required=True,
              help="The visual report to write (one self-contained HTML file).")
@click.option("--state", metavar="FILE", default=None,
              help="Rebuild from this scan state (rows, per-frame scores, thumbnails).")
@click.option("--from", "from_report", metavar="REPORT", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="Rebuild from a JSON or CSV report; its state (REPORT.state.sqlite) is used "
                   "when it is there, else the page has rows only.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Model for the heat maps (default: the scan's model file, if unchanged).")
@click.option("--details", type=click.IntRange(min=0), default=None, metavar="N",
              help="Videos shown in detail: the N highest scores  [default: every FAKE one "
                   "and the top of the table, 100 to 500]")
@click.option("--quiet", "-q", is_flag=True, help="Errors only.")
def report(html, state, from_report, model, details, quiet):
    """Rebuild the visual report from a finished or incremental scan, without rescanning."""
    _setup_logging(quiet, 0)
    if not state and not from_report:
        raise click.UsageError("give --state FILE or --from REPORT")
    if state and not os.path.isfile(state):
        _error(f"no scan state at {printable(state)}")
        sys.exit(EXIT_USAGE)
    from .errors import OutputConflict
    from .outputs import check_outputs
    from .state import default_state_path
    try:
        check_outputs([("--html", html)], [
            ("the state", state), ("the report", from_report), ("the model file", model),
            ("the report's state", from_report and default_state_path(from_report))])
    except OutputConflict as e:
        _error(str(e))
        sys.exit(EXIT_USAGE)
    ok = _rebuild_html(html, state=state, report=from_report, model=model, quiet=quiet,
                       details=details)
    sys.exit(EXIT_OK if ok else EXIT_OUTPUT)


def _row_line(r) -> str:
    """One line per video on a terminal: verdict (or status), score, path, reason."""
    label = r.verdict or r.status.upper().replace("_", " ")
    score = f"{r.fake_score:.3f}" if r.fake_score is not None else "  -  "
    reason = f"  ({printable(r.error or r.note)})" if r.error or r.note else ""
    return f"{label:8} {score}  {printable(r.path)}{reason}"


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--out", "-o", "out_dir", required=True, metavar="DIR",
              help="Dataset folder: DIR/<label>/<videoid>_<frame>.png and DIR/manifest.csv.")
@click.option("--label", type=click.Choice(["df", "real", "unlabeled"]), default=None,
              help="Label of every video (default: unlabeled).")
@click.option("--labels", "labels_csv", type=click.Path(exists=True, dir_okay=False),
              metavar="CSV", help="A CSV with path and label columns, named on its first line "
                                  "(paths relative to the CSV); with no PATHS, the videos it "
                                  "lists.")
@click.option("--frames", type=click.IntRange(min=1), default=32, show_default=True,
              help="Frames to sample per video, spread evenly.")
@click.option("--every", "every_s", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Sample one frame every SECONDS instead of --frames.")
@click.option("--all-faces", is_flag=True, help="Every face of a frame, not only the largest.")
@click.option("--min-face", type=click.IntRange(min=1), default=None, metavar="PX",
              help=f"Smallest face width kept (default: the scan's, {MIN_FACE_PX}).")
@click.option("--min-score", type=click.FloatRange(0, 1), default=None,
              help=f"Lowest detector score kept (default: the scan's, {MIN_SCORE:g}).")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg"]), default="png",
              show_default=True, help="Crop files: png is lossless; jpg re-compresses.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG quality (with --format jpg).")
@click.option("--contact-sheet", metavar="PNG", type=click.Path(dir_okay=False),
              help="Also write a grid of sample crops per label, to check them at a glance.")
@click.option("--workers", type=click.IntRange(min=0), default=None, metavar="N",
              help="Processes that decode and find faces  [default: one per core; 0: none, "
                   "all in the main process]")
@click.option("--video-timeout", "video_timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=None, metavar="SECONDS",
              help="Stop reading a video after SECONDS (a stuck decoder); it is skipped as an "
                   "error and the run goes on. Needs workers.  [default: no limit]")
@click.option("--quiet", "-q", is_flag=True, help="Errors only: no progress, no summary.")
@click.option("--verbose", "-v", count=True, help="One line per video (-vv: debug).")
def extract(paths, out_dir, label, labels_csv, frames, every_s, all_faces, min_face, min_score,
            fmt, quality, contact_sheet, workers, video_timeout_s, quiet, verbose):
    """Extract aligned face crops from videos into a training set (resumable).

    PATHS are video files, folders (searched recursively) and glob patterns. The crops are
    the ones the scan scores; `python -m training.train` reads DIR's label folders. DIR is
    new, empty or a dataset extract made.

    \b
    Exit codes: 0 finished (unreadable videos are listed as errors)
                2 usage: bad option or labels file, DIR not empty and not a dataset, an
                  output that is an input, DIR made with other settings
                4 a file could not be written (a full disk: no space left on device)
              130 interrupted (complete videos are kept; a rerun resumes)
    """
    from tqdm import tqdm

    from .discover import InputError
    from .extract import ExtractError, extract as run_extract
    if video_timeout_s is not None and workers == 0:
        raise click.UsageError("--video-timeout needs worker processes (--workers 1 or more)")
    _setup_logging(quiet, verbose)
    bar = None

    def progress(done, total, record):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="video", disable=quiet or not sys.stderr.isatty(),
                       file=sys.stderr, dynamic_ncols=True)
        elif record is not None:
            bar.update()
        interrupts.check()

    limits = {k: v for k, v in (("min_face", min_face), ("min_score", min_score)) if v is not None}
    started = time.monotonic()
    interrupts = _Interrupts()
    try:
        with interrupts:
            s = run_extract(paths, out_dir, label=label, labels_csv=labels_csv, frames=frames,
                            every_s=every_s, all_faces=all_faces, fmt=fmt, quality=quality,
                            contact_sheet=contact_sheet, progress=progress, workers=workers,
                            video_timeout_s=video_timeout_s, **limits)
    except (InputError, ExtractError) as e:
        _error(str(e))
        sys.exit(EXIT_USAGE)
    except OSError as e:
        _error(f"cannot write {e.filename or out_dir}: {e.strerror or e}")
        sys.exit(EXIT_OUTPUT)
    except KeyboardInterrupt:
        _error("interrupted; complete videos are kept, a re-run resumes")
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        labels = ", ".join(f"{k}: {v}" for k, v in s.crops_per_label.items()) or "none"
        click.echo(f"screener: {plural(s.videos, 'video')}: {plural(s.crops, 'crop')} from "
                   f"{plural(s.extracted, 'video')} ({labels}), {s.skipped} already done, "
                   f"{s.no_face} without a face, {plural(len(s.errors), 'error')} in "
                   f"{time.monotonic() - started:.1f} s; "
                   f"dataset: {printable(out_dir)}", err=True)
        if s.contact_sheet:
            click.echo(f"screener: contact sheet: {printable(s.contact_sheet)}", err=True)
    sys.exit(EXIT_OK)


if __name__ == "__main__":  # python -m screener.cli
    main()
