"""Report writers: CSV schema, formula-injection escaping, JSON, streaming, atomic write."""
import csv
import io
import json
import os

import pytest

from screener.files import atomic_write
from screener.report import FramesWriter, ReportWriter, escape_cell, safe_text
from screener.verdict import COLUMNS, FaceScore, VideoResult


def ok(path="a.mp4", score=0.123456789):
    return VideoResult(path=path, status="ok", verdict="REAL", fake_score=score,
                       fake_score_median=score, fake_score_max=score, fake_share=0.0,
                       faces_scored=2, frames_sampled=4, frames_with_face=2, duration_s=1.23456,
                       fps=25.0, width=320, height=240, codec="h264", model="m", threshold=0.5,
                       faces=[FaceScore(path, 3, 0, 0.12, 1.0, 2.0, 90.0, 91.0, 0.9, score)] * 2)


def read_csv(text):
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("cell, expected", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1", "'+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("plain.mp4", "plain.mp4"), ("a=b.mp4", "a=b.mp4"), ("", ""), (0.5, 0.5), (None, None),
])
def test_escape_cell(cell, expected):
    assert escape_cell(cell) == expected


def test_csv_schema_order_and_values():
    out = io.StringIO()
    w = ReportWriter(out, "csv")
    w.write(ok())
    w.write(VideoResult("b.mp4", "error", error="not a video file", model="m", threshold=0.5))
    w.close()
    header = out.getvalue().splitlines()[0]
    assert header == ",".join(COLUMNS)
    rows = read_csv(out.getvalue())
    assert rows[0]["fake_score"] == "0.1235" and rows[0]["duration_s"] == "1.235"
    assert rows[0]["verdict"] == "REAL" and rows[0]["faces_scored"] == "2"
    assert rows[1]["fake_score"] == "" and rows[1]["verdict"] == ""  # no score, not 0
    assert rows[1]["error"] == "not a video file"


def test_csv_escapes_hostile_names_and_reasons():
    out = io.StringIO()
    w = ReportWriter(out, "csv")
    w.write(ok(path="=cmd|' /C calc'!A0.mp4"))
    w.write(VideoResult("@x.mp4", "error", error="-bad, \"quoted\"\nnewline"))
    rows = read_csv(out.getvalue())
    assert rows[0]["path"] == "'=cmd|' /C calc'!A0.mp4"
    assert rows[1]["path"] == "'@x.mp4"
    assert rows[1]["error"].startswith("'-bad, \"quoted\"")


def test_non_utf8_names_are_written_as_escapes():
    name = os.fsdecode(b"bad-\xff\xfe.mp4")  # a Linux name that is not UTF-8
    assert safe_text(name) == "bad-\\xff\\xfe.mp4"
    out = io.StringIO()
    ReportWriter(out, "csv").write(ok(path=name))
    out.getvalue().encode("utf-8")  # no lone surrogates
    assert read_csv(out.getvalue())[0]["path"] == "bad-\\xff\\xfe.mp4"


def test_json_report_is_complete_and_unescaped():
    out = io.StringIO()
    w = ReportWriter(out, "json", meta={"screener": "0.1", "model": {"name": "m"}})
    w.write(ok(path="=x.mp4"))
    w.write(VideoResult("vidéo.mp4", "no_face", error="no face"))
    w.close(extra={"elapsed_s": 1.0})
    doc = json.loads(out.getvalue())
    assert doc["model"] == {"name": "m"} and doc["complete"] is True
    assert [v["path"] for v in doc["videos"]] == ["=x.mp4", "vidéo.mp4"]  # JSON needs no quote
    assert list(doc["videos"][0]) == list(COLUMNS)
    assert doc["videos"][0]["fake_score"] == 0.1235 and doc["videos"][1]["fake_score"] is None
    assert doc["summary"] == {"videos": 2, "fake": 0, "real": 1, "no_face": 1, "errors": 0,
                              "low_evidence": 0}


def test_json_interrupted_and_empty():
    out = io.StringIO()
    w = ReportWriter(out, "json")
    w.close(complete=False)
    doc = json.loads(out.getvalue())
    assert doc["videos"] == [] and doc["complete"] is False


def test_rows_are_flushed_as_written(tmp_path):
    path = tmp_path / "r.csv"
    with open(path, "w", newline="") as f:
        w = ReportWriter(f, "csv")
        w.write(ok("a.mp4"))
        # another reader sees the row before the writer is closed
        assert len(read_csv(path.read_text())) == 1
        w.write(ok("b.mp4"))
        assert len(read_csv(path.read_text())) == 2


def test_frames_writer_one_row_per_face():
    out = io.StringIO()
    w = FramesWriter(out)
    w.write(ok("a.mp4"))
    w.write(VideoResult("b.mp4", "no_face"))
    rows = read_csv(out.getvalue())
    assert len(rows) == 2
    assert rows[0]["frame_index"] == "3" and rows[0]["time_s"] == "0.12"
    assert rows[0]["box_w"] == "90.0" and rows[0]["p_fake"] == "0.1235"


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old\n"          # untouched
    assert os.listdir(tmp_path) == ["report.csv"]  # no temporary file left
    with atomic_write(path) as f:
        f.write("new\n")
    assert path.read_text() == "new\n"
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_a_whole_report_counts_into_the_summary_it_is_given(tmp_path):
    """The incremental scan writes its report at once, counting kept rows of vanished files
    apart (state.ReportSummary)."""
    from screener.state import ReportSummary
    with atomic_write(tmp_path / "r.json") as f:
        w = ReportWriter(f, "json", summary=ReportSummary())
        for r in (ok(), VideoResult("b", "error", error="x"), VideoResult("c", "missing")):
            w.write(r)
        w.close()
    assert (w.summary.videos, w.summary.errors, w.summary.missing) == (3, 1, 1)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert len(doc["videos"]) == 3 and doc["summary"]["missing"] == 1
