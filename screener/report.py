"""Write scan results: CSV or JSON, one row per video, rows flushed as each video finishes.

File names are user input and end up in cells a spreadsheet may evaluate, so every text cell of a
CSV that starts with = + - @ (or a tab or carriage return) is prefixed with a single quote (the
OWASP advice against CSV formula injection). Names that are not valid UTF-8 are written with
backslash escapes, so a report is always valid UTF-8.

`atomic_write` writes a whole file so that a reader sees the old file or the new one, never half
of one (temporary file in the same folder, fsync, rename); every report, frames file and page is
written with it, also when rows stream in as videos finish.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable

from .verdict import COLUMNS, FACE_COLUMNS, FaceScore, Summary, VideoResult

FORMATS = ("csv", "json")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")

# Decimal places per column; the same rounding in CSV and JSON so the two always agree.
DECIMALS = {"fake_score": 4, "fake_score_median": 4, "fake_score_max": 4, "fake_share": 4,
            "duration_s": 3, "fps": 3, "threshold": 4, "time_s": 3, "box_x": 1, "box_y": 1,
            "box_w": 1, "box_h": 1, "detector_score": 4, "p_fake": 4}


def safe_text(text: str) -> str:
    """`text` as valid UTF-8: bytes of a non-UTF-8 file name become backslash escapes."""
    return os.fsencode(text).decode("utf-8", "backslashreplace") if isinstance(text, str) else text


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """"1 video", "2 videos": a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def escape_cell(value):
    """Neutralise a CSV cell a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def clean_row(row: dict) -> dict:
    """Round floats per column, make text valid UTF-8, and turn NaN into None (no value)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, float):
            v = None if not math.isfinite(v) else round(v, DECIMALS.get(k, 6))
        elif isinstance(v, str):
            v = safe_text(v)
        out[k] = v
    return out


def csv_cells(row: dict) -> dict:
    return {k: "" if v is None else escape_cell(v) for k, v in clean_row(row).items()}


@contextmanager
def _open_out(path, encoding="utf-8"):
    """A text stream for `path`; "-" is standard output (left open)."""
    if str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding=encoding, newline="") as f:
        yield f


class CsvRows:
    """A CSV file written one row at a time, flushed after each row (a crash keeps them)."""

    def __init__(self, stream: IO[str], columns: Iterable[str]):
        self.stream = stream
        self.writer = csv.DictWriter(stream, fieldnames=list(columns), lineterminator="\n")
        self.writer.writeheader()
        stream.flush()

    def write(self, row: dict) -> None:
        self.writer.writerow(csv_cells(row))
        self.stream.flush()


class ReportWriter:
    """Streams a scan report in `fmt` ("csv" or "json") to `stream` as results arrive.

    CSV: a header, then one row per video. JSON: an object {"screener", "model", "videos": [...],
    "summary", "complete"}; each video is one line, and `close` writes the summary and the
    closing brackets (a killed run leaves the rows, one per line, without them).
    """

    def __init__(self, stream: IO[str], fmt: str = "csv", meta: dict | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")
        self.stream, self.fmt, self.count = stream, fmt, 0
        self.summary = Summary()
        if fmt == "csv":
            self._csv = CsvRows(stream, COLUMNS)
        else:
            stream.write("{\n" + self._members(meta) + ' "videos": [\n')
            stream.flush()

    def write(self, result: VideoResult) -> None:
        self.summary.add(result)
        if self.fmt == "csv":
            self._csv.write(result.row())
        else:
            sep = ",\n" if self.count else ""
            self.stream.write(sep + "  " + json.dumps(clean_row(result.row()), ensure_ascii=False))
            self.stream.flush()
        self.count += 1

    def close(self, complete: bool = True, extra: dict | None = None) -> None:
        if self.fmt == "json":
            tail = {"summary": vars(self.summary), "complete": complete, **(extra or {})}
            self.stream.write(("\n" if self.count else "") + " ],\n" + self._members(tail).rstrip(",\n") + "\n}\n")
        self.stream.flush()


    @staticmethod
    def _members(d: dict | None) -> str:
        """Top-level JSON object members, one per line, each followed by a comma."""
        return "".join(f" {json.dumps(safe_text(str(k)))}: "
                       f"{json.dumps(_json_safe(v), ensure_ascii=False)},\n"
                       for k, v in (d or {}).items())


class FramesWriter:
    """`--frames-out`: one CSV row per scored face, flushed per video."""

    def __init__(self, stream: IO[str]):
        self._csv = CsvRows(stream, FACE_COLUMNS)

    def write(self, result: VideoResult) -> None:
        for face in result.faces:
            self._csv.writer.writerow(csv_cells(vars(face)))
        self._csv.stream.flush()


def _json_safe(obj):
    if isinstance(obj, dict):
        return {safe_text(str(k)): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str):
        return safe_text(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


NAME_MAX = 255  # bytes in a file name, on every filesystem a report is likely to be on


def fit_name(name: str, max_bytes: int) -> str:
    """`name` cut (whole characters) to at most `max_bytes` bytes as the filesystem stores it."""
    while len(os.fsencode(name)) > max_bytes:
        name = name[:-1]
    return name


def _temp_stem(name: str) -> str:
    # ".<stem>.<8 random>.tmp" fits NAME_MAX whatever the name: a legal 255-byte --out works.
    return fit_name(name, 200)


def is_temporary_of(path, candidate: str) -> bool:
    """Whether the file name `candidate` is one of atomic_write's temporary files for `path`
    (left behind when a run was killed while writing it)."""
    stem = re.escape(_temp_stem(Path(path).name))
    return re.fullmatch(rf"\.{stem}\.[a-z0-9_]+\.tmp", candidate) is not None


class _Named:
    """A file object whose failed writes name `path` (OSError.filename), so the caller can
    say which output could not be written; everything else is the file's own."""

    def __init__(self, f, path):
        self._f, self._path = f, os.fspath(path)

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            raise _naming(e, self._path)

    def flush(self):
        try:
            self._f.flush()
        except OSError as e:
            raise _naming(e, self._path)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _naming(e: OSError, path, tmp=None) -> OSError:
    if e.filename is None or (tmp is not None and e.filename == tmp):
        e.filename = os.fspath(path)
    return e


def _is_stream(path: Path) -> bool:
    """An existing output that is not a regular file (a device, a pipe): written as it is."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not path.is_dir()
    except OSError:
        return False


@contextmanager
def atomic_write(path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = ""):
    """Write `path` all at once: readers see the old file or the new one, never a part.

    Yields a file object for a temporary file in the same folder; on success it is flushed,
    fsynced and renamed over `path` (and the folder fsynced, so the rename survives a power
    cut). On an exception the temporary file is removed and `path` is untouched. A failure
    raises OSError naming `path` (a full disk: errno ENOSPC). A `path` that exists and is
    not a regular file (/dev/stdout, a named pipe) cannot be replaced: it is written directly.
    """
    path = Path(path)
    kw = {} if "b" in mode else dict(encoding=encoding, newline=newline)
    folder = path.parent if str(path.parent) else Path(".")
    f = fd = tmp = None
    try:
        if _is_stream(path):
            f = open(path, mode, **kw)
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{_temp_stem(path.name)}.", suffix=".tmp",
                                       dir=folder)
            f = os.fdopen(fd, mode, **kw)
            os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp makes 0600; as a normal file
    except OSError as e:
        _discard(f if f is not None else fd, tmp)
        raise _naming(e, path, tmp)
    try:
        yield _Named(f, path)  # the caller's errors pass as they are (its writes name `path`)
    except BaseException:
        _discard(f, tmp)
        raise
    try:
        f.flush()
        if tmp is not None:
            os.fsync(f.fileno())
        f.close()
        if tmp is not None:
            os.replace(tmp, path)
    except BaseException as e:
        _discard(f, tmp)
        if isinstance(e, OSError):
            _naming(e, path, tmp)
        raise
    if tmp is None:
        return
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder
    finally:
        os.close(dir_fd)


def _discard(f, tmp) -> None:
    """After a failure: close without flushing what could not be written, drop the temporary
    file."""
    try:
        if isinstance(f, int):
            os.close(f)
        elif f is not None:
            try:
                f.close()
            except OSError:  # the buffered rest could not be written either
                pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def write_report(path, results: Iterable[VideoResult], fmt: str = "csv",
                 meta: dict | None = None, extra: dict | None = None) -> Summary:
    """Write a whole report atomically (the incremental scan rewrites its report this way)."""
    with atomic_write(path) as f:
        w = ReportWriter(f, fmt, meta)
        for r in results:
            w.write(r)
        w.close(extra=extra)
    return w.summary


def write_frames(path, results: Iterable[VideoResult]) -> None:
    with atomic_write(path) as f:
        w = FramesWriter(f)
        for r in results:
            w.write(r)


__all__ = ["FORMATS", "ReportWriter", "FramesWriter", "atomic_write", "is_temporary_of",
           "fit_name", "write_report", "write_frames", "escape_cell", "safe_text", "clean_row",
           "plural", "FaceScore"]
