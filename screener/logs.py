"""How screener's lines reach a terminal or a log file, from any process.

File names, labels, model-card text and decoder messages are user input: a name holding a
newline and `screener: 0 videos` would forge a line, an escape sequence would recolour or hide
the terminal's text. `printable` is the one escaping function every such line goes through:
in the CLI's own messages, its log handlers, the local engine's worker processes and the Ray
engine's tasks (`log_in_worker`).
"""
from __future__ import annotations

import logging
import sys

PACKAGE = "screener"  # the logger every module of the package logs under


def printable(text) -> str:
    """`text` made safe for a terminal or a log line: valid UTF-8 (bytes of a name that is not
    become backslash escapes), and no control or other unprintable character (newline, escape
    sequences, bidi overrides become escapes such as \\n and \\x1b)."""
    from .report import safe_text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in safe_text(str(text)))


class EscapingFormatter(logging.Formatter):
    """A log record as one printable line (see `printable`)."""

    def format(self, record) -> str:
        return printable(super().format(record))


class TerminalFormatter(logging.Formatter):
    """`screener: warning: message`, as one printable line."""

    def format(self, record) -> str:
        return printable(f"screener: {record.levelname.lower()}: {super().format(record)}")


def log_in_worker(level: int) -> None:
    """In a worker process (the local engine's pool, a Ray task): the package's log lines on
    stderr as the CLI prints them, escaped, at the parent's level (-q: errors only), instead
    of Python's last-resort handler, which writes them raw."""
    logger = logging.getLogger(PACKAGE)
    if getattr(logger, "_screener_worker_level", None) == level:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TerminalFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    logger._screener_worker_level = level


_terminal_level: int | None = None


def set_terminal_level(level: int) -> None:
    """The level of what this process shows on its terminal (the CLI's -q / -v), which its
    workers log at: a --log-file may make the process itself log more."""
    global _terminal_level
    _terminal_level = level


def worker_level() -> int:
    """The level worker processes log at: the terminal's (set_terminal_level), else the
    level this process logs the package at."""
    if _terminal_level is not None:
        return _terminal_level
    return logging.getLogger(PACKAGE).getEffectiveLevel()
