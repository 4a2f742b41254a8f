"""The `screener` command: options, progress, messages and exit codes. Nothing else.

It builds the options objects once from its flags (screener.options checks them), calls the
library (`run.scan_reports`, `extract.extract`, `html_report.rebuild`) and maps what the
library raises to one line and an exit code (`_exit_code`; the codes are listed in `screener
scan --help` and README "Exit codes").
"""
from __future__ import annotations

import logging
import os
import sys
import time

import click

from .logs import (SUMMARY_LOGGER, LogFile, keep_traceback, printable, result_line,
                   setup_logging)
from .options import MIN_FACE_PX, MIN_SCORE, OptionsError
from .report import plural
from .run import Interrupts

EXIT_OK, EXIT_FAKE, EXIT_USAGE, EXIT_MODEL, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_LOCKED, EXIT_STATE = 5, 6
EXIT_BUG = 70  # an error nobody expected, a bug (sysexits' EX_SOFTWARE): never 1, --fail-on-fake's
# The reader of --out - went away (`screener scan DIR --out - | head`): stop quietly, with the
# status a shell gives a command killed by SIGPIPE.
EXIT_PIPE = 141

log = logging.getLogger("screener")


# When the command started: the clock of a scan's elapsed time, until its last row in the JSON
# report and HTML page, until the command's end (the page written) in the summary line.
STARTED = "screener.started"


class _Commands(click.Group):
    """screener's commands: an error nobody expected (a bug) ends one with exit 70 and one
    line that says where its traceback went, never a bare traceback and exit 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            where = keep_traceback(e)
            _error(f"unexpected error (a bug in screener; exit {EXIT_BUG}): {type(e).__name__}: "
                   f"{e}; " + (f"its traceback is {where}" if where else
                               "rerun with -vv (or --log-file FILE) to see its traceback"))
            sys.exit(EXIT_BUG)


@click.group(cls=_Commands)
@click.version_option(package_name="screener")
@click.pass_context
def main(ctx):
    """screener: batch deepfake screening of videos with MesoNet."""
    ctx.meta[STARTED] = time.monotonic()


def _largest(largest_face: bool, all_faces: bool) -> bool:
    """--largest-face, or the default: every face, linked into people. --all-faces, which
    scored every face before people were linked, now asks for the default."""
    if largest_face and all_faces:
        raise click.UsageError("--all-faces and --largest-face exclude each other")
    return largest_face


def _started() -> float:
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(STARTED, time.monotonic()) if ctx is not None else time.monotonic()


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
@click.option("--largest-face", is_flag=True,
              help="Score only the largest face of each frame, pooled (no people: the "
                   "default links every face into people and judges each).")
@click.option("--all-faces", is_flag=True, hidden=True)  # the default since people: accepted
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
              help="Keep the rows of vanished files: status missing, no verdict or score.")
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
def scan(paths, out, fmt, frames_out, frames, every_s, largest_face, all_faces, min_face,
         batch_size, model,
         threshold, fail_on_fake, workers, engine, address, device, video_timeout_s, quiet,
         verbose, state, no_state, rescan, settle_s, keep_missing, allow_empty, log_file, html,
         details):
    """Screen videos for deepfakes and write one row per video.

    PATHS are video files, folders (searched recursively) and glob patterns, here or in
    object storage: s3://bucket/key.mp4, s3://bucket/prefix/ (a folder), globs (needs the s3
    extra; credentials and endpoint from AWS_* variables or ~/.aws). Outputs (--out, --html,
    --frames-out, --state, --log-file) are local files.

    \b
    Exit codes:
        0 finished (unreadable videos are rows with status error)
        1 --fail-on-fake and a video is FAKE
        2 usage: a bad option, a missing PATH, no video found, an output that
          is an input or another output, the ray or s3 extra missing; object
          storage: no such bucket, access denied, no answer from the endpoint
        3 the model could not be loaded
        4 an output could not be written (a full disk: no space left)
        5 another scan holds the state lock
        6 the state file is unusable or read-only (--rescan, or another --state)
       70 an unexpected error, a bug (--log-file or -vv shows its traceback)
      130 interrupted (the rows written so far are kept)
      141 --out - and the reader of the report went away
    """
    if state and no_state:
        raise click.UsageError("--state and --no-state exclude each other")
    from .files import is_stream  # a report that is a stream (/dev/null, a pipe) keeps no state
    stateful = not no_state and (state or (str(out) != "-" and not is_stream(out)))
    if allow_empty and not stateful:
        raise click.UsageError("--allow-empty needs a state (--out FILE or --state FILE)")
    from .options import from_keywords
    sample = {"min_face": min_face} if min_face is not None else {}
    try:
        options, report, st = from_keywords(
            with_report=True, with_state=True, model=model, threshold=threshold, frames=frames,
            every_s=every_s, largest_face=_largest(largest_face, all_faces), **sample, engine=engine, workers=workers,
            address=address, video_timeout_s=video_timeout_s, batch_size=batch_size, out=out,
            fmt=fmt, frames_out=frames_out, html=html, details=details, state=state,
            rescan=rescan, settle_s=settle_s, keep_missing=keep_missing, allow_empty=allow_empty)
    except OptionsError as e:
        raise click.UsageError(str(e)) from None
    setup_logging(quiet, verbose)
    if log_file:
        LogFile.add(log_file)
    from .errors import ScreenerError
    try:
        from .device import select_device
        select_device(device)
    except ScreenerError as e:  # --device gpu without one: the model cannot be loaded there
        _error(str(e))
        sys.exit(EXIT_MODEL)
    try:
        from .engines import check_engine
        check_engine(engine)
        code = _scan(paths, options, report, st if stateful else None, state is not None,
                     fail_on_fake, quiet, log_file)
    except KeyboardInterrupt:  # before the first video (finding files, loading the model)
        _error("interrupted")
        code = EXIT_INTERRUPTED
    except ScreenerError as e:  # the engine is not installed, or cannot join its cluster
        _error(str(e))
        code = _exit_code(e)
    sys.exit(_log_file_failed(code))


def _scan(paths, options, report, st, state_named: bool, fail_on_fake: bool, quiet: bool,
          log_file) -> int:
    """The scan command's body, with or without a state (`st`); returns the exit code."""
    from tqdm import tqdm

    from .discover import find_videos
    from .errors import ScreenerError
    from .outputs import check_outputs
    from .run import scan_inputs, scan_outputs, scan_reports
    from .scoring import load_model
    from .state import default_state_path

    started = _started()
    show_rows = report.to_file and not quiet and sys.stdout.isatty()
    state_path = (st.path or default_state_path(report.out)) if st else None
    handler = LogFile.current()
    try:
        # No video is a usage error, unless the caller says an empty drop folder is normal
        # (cron, --allow-empty): then the report empties.
        outputs = scan_outputs(report, state_path, state_named, log_file)
        videos = find_videos(paths, allow_empty=st is not None and st.allow_empty,
                             outputs=[path for _, path in outputs])
        check_outputs(outputs, scan_inputs(videos, options.model))  # before anything is read
        try:
            if handler is not None:
                handler.open_now()
        except OSError:
            _error(handler.failed())
            return EXIT_OUTPUT
        if not videos:
            log.warning("no video in %s: the report lists none", ", ".join(map(str, paths)))
        with Interrupts() as interrupts, tqdm(total=0, unit="video", file=sys.stderr,
                                               disable=quiet or not sys.stderr.isatty(),
                                               dynamic_ncols=True) as bar:
            def on_result(r):
                if show_rows:
                    tqdm.write(result_line(r), file=sys.stdout)
                bar.update()
                interrupts.check()
            scorer = load_model(options.model, options.threshold, runtime=options.runtime)
            outcome = scan_reports(videos, scorer, options, report, st, started=started,
                                   on_plan=lambda n: bar.reset(total=n), on_result=on_result)
    except ScreenerError as e:
        _error(str(e))
        return _exit_code(e)
    except OSError as e:  # a disk filled up or went away, a pipe's reader left
        if report.to_stdout and isinstance(e, BrokenPipeError):
            return _reader_gone()
        return _cannot_write(e, report.out)
    if outcome.html and not quiet:
        _said_html(report.html, outcome.html)
    if outcome.interrupted:
        _error(outcome.interrupted_line())
        return EXIT_INTERRUPTED
    line = outcome.summary_line(time.monotonic() - started)  # the visual report too
    logging.getLogger(SUMMARY_LOGGER).info(line)  # in the --log-file, whatever the terminal
    if not quiet:
        click.echo(printable(f"screener: {line}"), err=True)
    return EXIT_FAKE if fail_on_fake and outcome.report.fake else EXIT_OK


def _said_html(path, figures: dict) -> None:
    click.echo(f"screener: visual report: {printable(path)} ({figures['bytes'] / 1e6:.1f} MB, "
               f"{plural(figures['details'], 'video')} in detail)", err=True)


def _log_file_failed(code: int) -> int:
    """The exit code once the log file's fate is known: a write that failed is an output
    that could not be written."""
    handler = LogFile.current()
    if handler is None or handler.failure is None:
        return code
    _error(handler.failed())
    return EXIT_OUTPUT if code in (EXIT_OK, EXIT_FAKE) else code


def _reader_gone() -> int:
    """stdout's reader has gone: no message (nobody reads it), and none from Python either
    when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_PIPE


def _exit_code(e: Exception) -> int:
    """What the library raised, as an exit code (README "Exit codes")."""
    from .errors import ModelError, ScreenerError, StateError, StateLocked
    # Any other ScreenerError (bad input, an output that is an input, ...) is a usage error.
    for kind, code in ((ModelError, EXIT_MODEL), (StateLocked, EXIT_LOCKED),
                       (StateError, EXIT_STATE), (ScreenerError, EXIT_USAGE)):
        if isinstance(e, kind):
            return code
    raise e  # not ours: a bug (_Commands)


def _cannot_write(e: OSError, path) -> int:
    """An output that could not be written, in one line (a full disk: No space left on
    device), and its exit code."""
    _error(f"cannot write {e.filename or path}: {e.strerror or e}")
    return EXIT_OUTPUT


def _error(message: str) -> None:
    click.echo(f"screener: error: {printable(message)}", err=True)


@main.command(short_help="Rebuild the visual report from a scan, without rescanning.")
@click.option("--html", "html", metavar="FILE", required=True,
              help="The visual report to write (one self-contained HTML file).")
@click.option("--state", metavar="FILE", default=None,
              help="Rebuild from this scan state (rows, per-frame scores, thumbnails).")
@click.option("--from", "from_report", metavar="REPORT", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="Rebuild from a JSON or CSV report; its state (REPORT.state.sqlite) is used "
                   "when it is there, else the page has rows only.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Model for heat maps and a CSV report's card (default: the scan's if unchanged).")
@click.option("--details", type=click.IntRange(min=0), default=None, metavar="N",
              help="Videos shown in detail: the N highest scores  [default: every FAKE one "
                   "and the top of the table, 100 to 500]")
@click.option("--quiet", "-q", is_flag=True, help="Errors only.")
@click.option("--verbose", "-v", count=True, help="-vv: debug lines (and a bug's traceback).")
def report(html, state, from_report, model, details, quiet, verbose):
    """Rebuild the visual report from a finished or incremental scan, without rescanning."""
    setup_logging(quiet, verbose)
    if not state and not from_report:
        raise click.UsageError("give --state FILE or --from REPORT")
    if state and not os.path.isfile(state):
        _error(f"no scan state at {printable(state)}")
        sys.exit(EXIT_USAGE)
    from .errors import ScreenerError
    from .html_report import rebuild
    from .outputs import check_outputs
    from .state import default_state_path
    try:
        check_outputs([("--html", html)], [
            ("the state", state), ("the report", from_report), ("the model file", model),
            ("the report's state", from_report and default_state_path(from_report))])
        figures = rebuild(html, state=state, report=from_report, model=model, details=details)
    except ScreenerError as e:  # an output that is an input: 2; not a whole state: 6
        _error(str(e))
        sys.exit(_exit_code(e))
    except ValueError as e:  # a report that is not one of ours
        _error(str(e))
        sys.exit(EXIT_USAGE)
    except OSError as e:
        sys.exit(_cannot_write(e, html))
    if not quiet:
        _said_html(html, figures)
    sys.exit(EXIT_OK)


@main.command(short_help="Extract aligned face crops into a training set (resumable).")
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
@click.option("--largest-face", is_flag=True,
              help="Only the largest face of each frame (default: every face, named by person).")
@click.option("--all-faces", is_flag=True, hidden=True)  # the default since people: accepted
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
def extract(paths, out_dir, label, labels_csv, frames, every_s, largest_face, all_faces, min_face,
            min_score,
            fmt, quality, contact_sheet, workers, video_timeout_s, quiet, verbose):
    """Extract aligned face crops from videos into a training set (resumable).

    PATHS are video files, folders (searched recursively) and globs, here or in s3://... as
    for scan; DIR and the contact sheet are local files. The crops are the ones the scan
    scores; `python -m training.train` reads DIR's label folders. DIR is new, empty or a
    dataset extract made.

    \b
    Exit codes:
        0 finished (unreadable videos are listed as errors)
        2 usage: a bad option or labels file, DIR not empty and not a dataset,
          an output that is an input, DIR made with other settings, s3 as scan's
        4 a file could not be written (a full disk: no space left)
       70 an unexpected error, a bug (-vv shows its traceback)
      130 interrupted (complete videos are kept; a rerun resumes)
    """
    from tqdm import tqdm

    from .errors import ScreenerError
    from .extract import extract as run_extract
    from .options import EngineOptions, SampleOptions
    limits = {k: v for k, v in (("min_face", min_face), ("min_score", min_score)) if v is not None}
    try:
        sample = SampleOptions(frames=frames, every_s=every_s,
                               largest_face=_largest(largest_face, all_faces), **limits)
        engine = EngineOptions(workers=workers, video_timeout_s=video_timeout_s)
    except OptionsError as e:
        raise click.UsageError(str(e)) from None
    setup_logging(quiet, verbose)
    bar = None

    def progress(done, total, record):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="video", disable=quiet or not sys.stderr.isatty(),
                       file=sys.stderr, dynamic_ncols=True)
        elif record is not None:
            bar.update()
        interrupts.check()

    started = time.monotonic()
    interrupts = Interrupts()
    try:
        with interrupts:
            s = run_extract(paths, out_dir, label=label, labels_csv=labels_csv, sample=sample,
                            engine=engine, fmt=fmt, quality=quality,
                            contact_sheet=contact_sheet, progress=progress)
    except ScreenerError as e:  # bad input or labels, DIR not a dataset, an unreadable store
        _error(str(e))
        sys.exit(_exit_code(e))
    except OSError as e:
        sys.exit(_cannot_write(e, out_dir))
    except KeyboardInterrupt:
        _error("interrupted; complete videos are kept, a re-run resumes")
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        click.echo(printable(f"screener: {s.summary_line(time.monotonic() - started)}"),
                   err=True)
        if s.contact_sheet:
            click.echo(f"screener: contact sheet: {printable(s.contact_sheet)}", err=True)
    sys.exit(EXIT_OK)


if __name__ == "__main__":  # python -m screener.cli
    main()
