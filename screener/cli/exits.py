"""How the `screener` commands end: exit codes, errors in one line each, and interrupts.

The library raises one error type per kind of failure in neutral words; `exit_code` maps each
type to one exit code, the same for every command (README "Exit codes"), and `failed` says it in
one line, naming the files and options an error is about as the command line's flags
(`FLAGS`).
"""
from __future__ import annotations

import os
import signal
import sys

import click

from ..logs import LogFile, printable

EXIT_OK, EXIT_FAKE, EXIT_USAGE, EXIT_MODEL, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_LOCKED, EXIT_STATE = 5, 6
EXIT_BUG = 70  # an error nobody expected, a bug (sysexits' EX_SOFTWARE): never 1, --fail-on-fake's
# The reader of --out - went away (`screener scan DIR --out - | head`): stop quietly, with the
# status a shell gives a command killed by SIGPIPE.
EXIT_PIPE = 141


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


class LogFileFailed(Exception):
    """The --log-file could not be opened (the message says why): exit 4."""


def log_file_failed(code: int) -> int:
    """The exit code once the log file's fate is known: a write that failed is an output
    that could not be written."""
    handler = LogFile.current()
    if handler is None or handler.failure is None:
        return code
    error(handler.failed())
    return EXIT_OUTPUT if code in (EXIT_OK, EXIT_FAKE) else code


def reader_gone() -> int:
    """stdout's reader has gone: no message (nobody reads it), and none from Python either
    when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_PIPE


def exit_code(e: BaseException) -> int:
    """What the library raised, as an exit code, the same for every command (README "Exit
    codes"). Any other ScreenerError (bad input, an output that is an input, a bad option, a
    report that is not one) is a usage error."""
    from ..errors import ModelError, ScreenerError, StateError, StateLocked
    for kind, code in ((ModelError, EXIT_MODEL), (StateLocked, EXIT_LOCKED),
                       (StateError, EXIT_STATE), (ScreenerError, EXIT_USAGE),
                       (OSError, EXIT_OUTPUT), (KeyboardInterrupt, EXIT_INTERRUPTED)):
        if isinstance(e, kind):
            return code
    raise e  # not ours: a bug (_Commands)


# The files and options the library names by role or field (ScreenerError.named), as the
# command line names them.
FLAGS = {"the report": "--out", "the frames CSV": "--frames-out", "the visual report": "--html",
         "the log file": "--log-file", "the state": "--state", "the dataset folder": "--out",
         "the contact sheet": "--contact-sheet",
         "the rescan option": "--rescan", "the state option": "--state",
         "a state path": "--state PATH", "a state file": "--state FILE",
         "a model path": "--model PATH", "address": "--address", "engine": "--engine",
         "workers": "--workers", "video_timeout_s": "--video-timeout", "device": "--device"}


def worded(e: Exception, words: dict[str, str] = FLAGS) -> str:
    """The library's message, with the files and options it names said as their flags."""
    from ..errors import ScreenerError
    return e.worded(words) if isinstance(e, ScreenerError) else str(e)


def failed(e: Exception, path=None, words: dict[str, str] = FLAGS) -> int:
    """Say what failed in one line and return its exit code: an output that could not be
    written names it (a full disk: No space left on device)."""
    if isinstance(e, OSError):
        error(f"cannot write {e.filename or path}: {e.strerror or e}")
    else:
        error(worded(e, words))
    return exit_code(e)


def error(message: str) -> None:
    click.echo(f"screener: error: {printable(message)}", err=True)
