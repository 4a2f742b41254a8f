"""Write scan results: CSV or JSON, one row per video, rows flushed as each video finishes.

File names are user input and end up in cells a spreadsheet may evaluate, so every text cell of a
CSV that starts with = + - @ (or a tab or carriage return) is prefixed with a single quote (the
OWASP advice against CSV formula injection). Names that are not valid UTF-8 are written with
backslash escapes, so a report is always valid UTF-8.

Rows stream into their file as each video finishes (the plain scan), or a whole report is
written at once from stored results (the incremental scan); both go through `ReportWriter`, into
a file that `files.atomic_write` replaces whole.
"""
from __future__ import annotations

import csv
import json
import math
import os
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

    def __init__(self, stream: IO[str], fmt: str = "csv", meta: dict | None = None,
                 summary: Summary | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")
        self.stream, self.fmt, self.count = stream, fmt, 0
        self.summary = summary if summary is not None else Summary()
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


def report_header(card, sample) -> dict:
    """The report's header (JSON members before the rows): screener's version, the model and
    the sampling options. Nothing here may depend on the clock: an unchanged incremental
    rerun must write the same bytes."""
    from .version import __version__
    return {"screener": __version__,
            "model": {"name": card.name, "arch": card.arch, "threshold": card.threshold,
                      "sha256": card.sha256, "path": card.path, "metrics": card.metrics,
                      "limits": card.limits},
            "options": {"frames": sample.frames, "every_s": sample.every_s,
                        "largest_face": sample.largest_face, "min_face": sample.min_face}}


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


__all__ = ["FORMATS", "ReportWriter", "FramesWriter", "report_header", "escape_cell",
           "safe_text", "clean_row", "csv_cells", "plural", "FaceScore"]
