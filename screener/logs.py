"""How screener's lines reach a terminal or a log file, from any process.

File names, labels, model-card text and decoder messages are user input: a name holding a
newline and `screener: 0 videos` would forge a line, an escape sequence would recolour or hide
the terminal's text. `printable` is the one escaping function every such line goes through:
in the CLI's own messages, its log handlers, the local engine's worker processes and the Ray
engine's tasks (`log_in_worker`). The command line's handlers are here too: terminal lines
that keep clear of a progress bar, and the `--log-file`.
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


def keep_traceback(e: BaseException) -> str:
    """Put the traceback of an unexpected error where the user asked for it: the --log-file,
    and the terminal with -vv, each line escaped. Says where it went ("" for nowhere)."""
    import traceback
    lines = "".join(traceback.format_exception(e)).rstrip().splitlines()
    where = []
    handler = LogFile.current()
    if handler is not None and handler.write_lines(lines):
        where.append(f"in {printable(handler.baseFilename)}")
    if _terminal_level is not None and _terminal_level <= logging.DEBUG:  # -vv
        sys.stderr.write("".join(printable(line) + "\n" for line in lines))
        where.append("above")
    return " and ".join(where)


def result_line(r) -> str:
    """A video's line on a terminal: verdict (or status), score, path, reason."""
    label = r.verdict or r.status.upper().replace("_", " ")
    score = f"{r.fake_score:.3f}" if r.fake_score is not None else "  -  "
    reason = f"  ({printable(r.error or r.note)})" if r.error or r.note else ""
    return f"{label:8} {score}  {printable(r.path)}{reason}"


def worker_level() -> int:
    """The level worker processes log at: the terminal's (set_terminal_level), else the
    level this process logs the package at."""
    if _terminal_level is not None:
        return _terminal_level
    return logging.getLogger(PACKAGE).getEffectiveLevel()


# --- the command line's handlers (screener.cli sets them up) -------------------------------

SUMMARY_LOGGER = "screener.summary"  # a run's summary line: in the log file, echoed apart


class TqdmHandler(logging.Handler):
    """Log lines that do not break a progress bar (tqdm.write prints above it)."""

    def emit(self, record):
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never end the scan
            self.handleError(record)


def setup_logging(quiet: bool, verbose: int) -> None:
    """The terminal's logging: errors only (`quiet`), warnings, or more with `verbose`."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = TqdmHandler()
    handler.setFormatter(TerminalFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    set_terminal_level(level)  # worker processes print at this level too
    # Library chatter, even at -vv; the object-store clients' debug lines would show request
    # headers (signed with the credentials).
    for noisy in ("absl", "tensorflow", "keras", "h5py", "botocore", "aiobotocore", "boto3",
                  "s3fs", "fsspec", "urllib3", "aiohttp", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class LogFile(logging.FileHandler):
    """--log-file: one line per video and the summary at INFO, whatever the terminal shows.
    It is opened only once the outputs are checked (it must not be an input): lines logged
    before that wait. A failed write is remembered, not printed as a traceback: the run then
    says so once and ends as an output that could not be written."""

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
        if self.waiting is None:
            return
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

    def write_lines(self, lines: list[str]) -> bool:
        """Append `lines` (a traceback), each as an ERROR line of its own; False when the file
        is not open yet (outputs not checked: it may be an input) or cannot be written."""
        if self.waiting is not None or self.failure is not None:
            return False
        for line in lines:
            self.emit(logging.LogRecord(PACKAGE, logging.ERROR, __file__, 0, "%s", (line,), None))
        self.flush()
        return self.failure is None

    def failed(self) -> str:
        """Why the file could not be written, in one line (the error just raised, or the
        first failed write)."""
        e = self.failure or sys.exc_info()[1]
        return f"cannot write the log file {self.baseFilename}: {getattr(e, 'strerror', None) or e}"

    @classmethod
    def add(cls, path: str) -> "LogFile":
        """Log to `path` too; the terminal keeps its level, the summary is echoed there."""
        root = logging.getLogger()
        for h in root.handlers:
            h.setLevel(root.level)
            h.addFilter(lambda record: record.name != SUMMARY_LOGGER)
        handler = cls(path)
        handler.setLevel(logging.INFO)
        handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(min(root.level, logging.INFO))
        return handler

    @classmethod
    def current(cls) -> "LogFile | None":
        return next((h for h in logging.getLogger().handlers if isinstance(h, cls)), None)
