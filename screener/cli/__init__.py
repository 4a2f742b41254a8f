"""The `screener` command: options, progress, messages and exit codes. Nothing else.

It builds the options objects once from its flags (screener.options checks them), calls the
library (`run.scan`, `extract.extract`, `html_report.rebuild`, `shipped.shipped_models`) and
maps what the library raises to one line and an exit code (`exits.exit_code`; the codes are
listed in `screener scan --help` and README "Exit codes"). The options `scan` and `extract`
share are in `shared`; signals become interrupts in `exits.Interrupts`.
"""
from __future__ import annotations

import logging
import os
import sys
import time

import click

from ..logs import (SUMMARY_LOGGER, LogFile, keep_traceback, printable, result_line,
                   setup_logging)
from ..options import MIN_FACE_PX, MIN_SCORE, OptionsError
from ..report import plural
from .exits import (EXIT_BUG, EXIT_FAKE, EXIT_INTERRUPTED, EXIT_MODEL, EXIT_OK, EXIT_OUTPUT,
                    EXIT_USAGE, FLAGS, Interrupts, LogFileFailed, error, exit_code, failed,
                    log_file_failed, reader_gone, worded)
from .shared import TALK, WORKERS, largest, sampling, video_timeout

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
            error(f"unexpected error (a bug in screener; exit {EXIT_BUG}): {type(e).__name__}: "
                   f"{e}; " + (f"its traceback is {where}" if where else
                               "rerun with -vv (or --log-file FILE) to see its traceback"))
            sys.exit(EXIT_BUG)


@click.group(cls=_Commands)
@click.version_option(package_name="screener")
@click.pass_context
def main(ctx):
    """screener: batch deepfake screening of videos with MesoNet."""
    ctx.meta[STARTED] = time.monotonic()


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
@sampling("Score only the largest face of each frame, pooled (no people: the default links "
          "every face into people and judges each).",
           f"Smallest face width scored, in frame pixels (default {MIN_FACE_PX}); smaller "
           "faces are counted as too small.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Face crops per model call.")
@click.option("--model", metavar="NAME|FILE", default=None,
              help="A shipped model's name (`screener models` lists them) or a model file: a "
                   "screener .keras model or published MesoNet weights (default: the shipped "
                   "default model).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="FAKE when fake_score >= this (default: the model card's threshold).")
@click.option("--fail-on-fake", is_flag=True, help="Exit with status 1 when any video is FAKE.")
@WORKERS
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: a Ray cluster (README "
                   "\"Running on a Ray cluster\"; needs the ray extra).")
@click.option("--address", metavar="ADDR", default=None,
              help="With --engine ray: the cluster to join (default: RAY_ADDRESS, else a "
                   "local Ray for this scan).")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto",
              show_default=True, help="Where the model runs (gpu: fail unless TensorFlow sees one).")
@video_timeout("Stop reading a video after SECONDS (a stuck decoder, a hung mount; also while "
                "planning an incremental scan); it becomes an error row and the scan goes on. "
                "Needs workers (local engine) or Ray. [default: no limit]")
@TALK
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
         batch_size, model, threshold, fail_on_fake, workers, engine, address, device, video_timeout_s, quiet,
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
    from ..options import from_keywords
    sample = {"min_face": min_face} if min_face is not None else {}
    try:
        options, report, st = from_keywords(
            with_report=True, with_state=True, model=model, threshold=threshold, frames=frames,
            every_s=every_s, largest_face=largest(largest_face, all_faces), **sample,
            engine=engine, workers=workers, address=address, video_timeout_s=video_timeout_s, batch_size=batch_size, out=out,
            fmt=fmt, frames_out=frames_out, html=html, details=details, state=state,
            rescan=rescan, settle_s=settle_s, keep_missing=keep_missing, allow_empty=allow_empty)
    except OptionsError as e:
        raise click.UsageError(worded(e)) from None
    st = None if no_state else st.where(report)  # a stream (/dev/null, a pipe) keeps no state
    if allow_empty and st is None:
        raise click.UsageError("--allow-empty needs a state (--out FILE or --state FILE)")
    setup_logging(quiet, verbose)
    if log_file:
        LogFile.add(log_file)
    from ..errors import ModelError, ScreenerError
    try:
        from ..device import select_device
        select_device(device)
    except ScreenerError as e:  # --device gpu without one: the model cannot be loaded there
        error(worded(e))
        sys.exit(exit_code(ModelError()))
    code = _scan(paths, options, report, st, state is not None, fail_on_fake, quiet, log_file)
    sys.exit(log_file_failed(code))


def _scan(paths, options, report, st, state_named: bool, fail_on_fake: bool, quiet: bool,
          log_file) -> int:
    """The scan command's body, with or without a state (`st`); returns the exit code."""
    from tqdm import tqdm

    from ..errors import ScreenerError
    from ..run import scan

    started = _started()
    show_rows = report.to_file and not quiet and sys.stdout.isatty()
    handler = LogFile.current()
    words = {**FLAGS, "the state": "--state" if state_named else "the state file"}

    def found(videos):
        try:
            if handler is not None:
                handler.open_now()
        except OSError:
            raise LogFileFailed(handler.failed()) from None
        if not videos:
            log.warning("no video in %s: the report lists none", ", ".join(map(str, paths)))
    try:
        with Interrupts() as interrupts, tqdm(total=0, unit="video", file=sys.stderr,
                                               disable=quiet or not sys.stderr.isatty(),
                                               dynamic_ncols=True) as bar:
            def on_result(r):
                if show_rows:
                    tqdm.write(result_line(r), file=sys.stdout)
                bar.update()
                interrupts.check()
            # No video is a usage error, unless the caller says an empty drop folder is normal
            # (cron, --allow-empty): then the report empties.
            outcome = scan(paths, options, report, st, log_file=log_file, on_found=found,
                           started=started, on_plan=lambda n: bar.reset(total=n),
                           on_result=on_result)
    except KeyboardInterrupt:  # before the first video (finding files, loading the model)
        error("interrupted")
        return EXIT_INTERRUPTED
    except OSError as e:  # a disk filled up or went away, a pipe's reader left
        if report.to_stdout and isinstance(e, BrokenPipeError):
            return reader_gone()
        return failed(e, report.out, words)
    except LogFileFailed as e:
        error(str(e))
        return EXIT_OUTPUT
    except ScreenerError as e:
        return failed(e, words=words)
    if outcome.html and not quiet:
        _said_html(report.html, outcome.html)
    if outcome.interrupted:
        error(outcome.interrupted_line())
        return EXIT_INTERRUPTED
    line = outcome.summary_line(time.monotonic() - started)  # the visual report too
    logging.getLogger(SUMMARY_LOGGER).info(line)  # in the --log-file, whatever the terminal
    if not quiet:
        click.echo(printable(f"screener: {line}"), err=True)
    return EXIT_FAKE if fail_on_fake and outcome.report.fake else EXIT_OK


def _said_html(path, figures: dict) -> None:
    click.echo(f"screener: visual report: {printable(path)} ({figures['bytes'] / 1e6:.1f} MB, "
               f"{plural(figures['details'], 'video')} in detail)", err=True)


@main.command(short_help="Rebuild the visual report from a scan, without rescanning.")
@click.option("--html", "html", metavar="FILE", required=True,
              help="The visual report to write (one self-contained HTML file).")
@click.option("--state", metavar="FILE", default=None,
              help="Rebuild from this scan state (rows, per-frame scores, thumbnails).")
@click.option("--from", "from_report", metavar="REPORT", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="Rebuild from a JSON or CSV report; its state (REPORT.state.sqlite) is used "
                   "when it is there, else the page has rows only.")
@click.option("--model", metavar="NAME|FILE", default=None,
              help="Model for heat maps and a CSV report's card, a shipped model's name or a "
                   "model file (default: the scan's if unchanged).")
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
        error(f"no scan state at {printable(state)}")
        sys.exit(EXIT_USAGE)
    from ..errors import ScreenerError
    from ..html_report import rebuild
    from ..outputs import check_outputs
    from ..state import default_state_path
    try:  # rebuild checks the model (a file or a shipped name) and its card itself
        check_outputs([("the visual report", html)], [
            ("the state", state), ("the report", from_report),
            ("the report's state", from_report and default_state_path(from_report))])
        figures = rebuild(html, state=state, report=from_report, model=model, details=details)
    except (ScreenerError, OSError) as e:  # an output that is an input, a report that is not
        sys.exit(failed(e, html))          # one: 2; not a whole state: 6; not written: 4
    if not quiet:
        _said_html(html, figures)
    sys.exit(EXIT_OK)


@main.command(short_help="List the models that ship with screener.")
@click.option("--json", "as_json", is_flag=True, help="Print them as a JSON list.")
def models(as_json):
    """List the models that ship with screener: the name --model takes, the default, the
    card's name, architecture and file size, its headline figures ("summary") and how fast it
    scores faces ("cost")."""
    from ..shipped import shipped_models
    found = shipped_models()
    if as_json:
        import json
        click.echo(json.dumps([m.as_dict() for m in found], indent=2))
        sys.exit(EXIT_OK)
    if not found:
        error("no shipped model found")
        sys.exit(EXIT_MODEL)
    for i, m in enumerate(found):
        click.echo(("\n" if i else "") + "\n".join(_model_lines(m)))
    sys.exit(EXIT_OK)


def _model_lines(m) -> list[str]:
    """One shipped model as a block: its name, then label: value lines."""
    rows = [("card name", m.card_name or "(none)"), ("arch", str(m.card.get("arch", "unknown"))),
            ("file", f"{m.path} ({_size(m.size)})")]
    if "threshold" in m.card:
        rows.append(("threshold", f"{m.card['threshold']:g}"))
    rows += [(str(k), f"{v:.3f}" if isinstance(v, float) else str(v))
             for k, v in m.summary.items()] or [("figures", "none in its card")]
    rows.append(("cost", _cost(m.cost)))
    width = max(len(label) for label, _ in rows) + 1
    head = m.name + ("  (default)" if m.default else "")
    return [printable(head)] + [printable(f"  {label + ':':<{width}} {value}")
                                for label, value in rows]


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _cost(cost: dict) -> str:
    if not cost:
        return "not measured"
    fps = cost.get("faces_per_s")
    said = f"{fps:g} faces/s" if isinstance(fps, (int, float)) else "faces/s unknown"
    ms = cost.get("ms_per_face")
    if isinstance(ms, (int, float)) and not isinstance(ms, bool):
        said += f", {ms:g} ms a face"
    where = ", ".join(str(cost[k]) for k in ("runtime", "machine") if cost.get(k))
    return said + (f" ({where})" if where else "")


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
@sampling("Only the largest face of each frame (default: every face, named by person).",
           f"Smallest face width kept (default: the scan's, {MIN_FACE_PX}).")
@click.option("--min-score", type=click.FloatRange(0, 1), default=None,
              help=f"Lowest detector score kept (default: the scan's, {MIN_SCORE:g}).")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg"]), default="png",
              show_default=True, help="Crop files: png is lossless; jpg re-compresses.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG quality (with --format jpg).")
@click.option("--contact-sheet", metavar="PNG", type=click.Path(dir_okay=False),
              help="Also write a grid of sample crops per label, to check them at a glance.")
@WORKERS
@video_timeout("Stop reading a video after SECONDS (a stuck decoder); it is skipped as an "
                "error and the run goes on. Needs workers.  [default: no limit]")
@TALK
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

    from ..errors import ScreenerError
    from ..extract import extract as run_extract
    from ..options import EngineOptions, SampleOptions
    limits = {k: v for k, v in (("min_face", min_face), ("min_score", min_score)) if v is not None}
    try:
        sample = SampleOptions(frames=frames, every_s=every_s,
                               largest_face=largest(largest_face, all_faces), **limits)
        engine = EngineOptions(workers=workers, video_timeout_s=video_timeout_s)
    except OptionsError as e:
        raise click.UsageError(worded(e)) from None
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
    except KeyboardInterrupt:
        error("interrupted; complete videos are kept, a re-run resumes")
        sys.exit(EXIT_INTERRUPTED)
    except (ScreenerError, OSError) as e:  # bad input or labels, DIR not a dataset, a store
        sys.exit(failed(e, out_dir))       # that cannot be listed: 2; not written: 4
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        click.echo(printable(f"screener: {s.summary_line(time.monotonic() - started)}"),
                   err=True)
        if s.contact_sheet:
            click.echo(f"screener: contact sheet: {printable(s.contact_sheet)}", err=True)
    sys.exit(EXIT_OK)
