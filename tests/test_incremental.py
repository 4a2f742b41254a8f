"""Cron-safe incremental scans through the real CLI, in subprocesses: reruns, changed files, a new
model, overlap, SIGKILL and resume, files still being written, a corrupt state file."""
from __future__ import annotations

import csv
import json
import fcntl
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import build_tiny_model, copy, one_face

pytestmark = pytest.mark.slow

EXIT_LOCKED, EXIT_STATE = 5, 6
SUMMARY = re.compile(r"scanned (\d+), reused (\d+), deferred (\d+)")


@pytest.fixture(scope="module")
def clips(make_clip):
    """Four small distinct clips (320x240, 8 frames), made once."""
    return [make_clip(f"inc{i}.mp4", faces=[one_face("collins", x=40 + 30 * i)], n_frames=8)
            for i in range(4)]


def folder_of(tmp_path, clips, n=None, name="in") -> Path:
    d = tmp_path / name
    for i, c in enumerate(clips[:n] if n else clips):
        copy(c, d / f"v{i}.mp4")
    return d


def scan(model, *args, check=True, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "screener", "scan", "--model", str(model), "--frames", "8",
           *map(str, args)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, **kw)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def counts(out) -> tuple[int, int, int]:
    m = SUMMARY.search(out.stderr)
    assert m, out.stderr
    return tuple(int(g) for g in m.groups())


def rows(report: Path) -> list[dict]:
    with open(report, newline="") as f:
        return list(csv.DictReader(f))


def test_reruns_scan_only_what_changed(tmp_path, clips, tiny_model, no_face_video):
    d, report, log = folder_of(tmp_path, clips), tmp_path / "r.csv", tmp_path / "scan.log"
    first = scan(tiny_model, d, "--out", report, "--settle", 0, "--log-file", log)
    assert counts(first) == (4, 0, 0)
    assert (tmp_path / "r.csv.state.sqlite").exists()  # the default: next to the report
    before = report.read_bytes()
    assert [r["path"] for r in rows(report)] == [str(d / f"v{i}.mp4") for i in range(4)]

    again = scan(tiny_model, d, "--out", report, "--settle", 0, "--log-file", log)
    assert counts(again) == (0, 4, 0)
    assert report.read_bytes() == before
    lines = log.read_text().splitlines()
    assert sum("v1.mp4" in ln for ln in lines) == 1          # one line per scanned video...
    assert sum("scanned" in ln for ln in lines) == 2         # ...and each run's summary

    os.utime(d / "v1.mp4")                                   # touched
    copy(no_face_video, d / "v2.mp4")                        # replaced
    out = scan(tiny_model, d, "--out", report, "--settle", 0)
    assert counts(out) == (2, 2, 0)
    assert [r["status"] for r in rows(report)] == ["ok", "ok", "no_face", "ok"]

    out = scan(tiny_model, d, "--out", report, "--settle", 0, "--threshold", "0.75")
    assert counts(out) == (4, 0, 0)                          # a new threshold: all again
    assert {r["verdict"] for r in rows(report) if r["status"] == "ok"} == {"REAL"}

    other = build_tiny_model(tmp_path, p_fake=0.9, name="other")
    out = scan(other, d, "--out", report, "--settle", 0)
    assert counts(out) == (4, 0, 0)                          # another model file: all again
    assert {r["model"] for r in rows(report)} == {"other"}

    (d / "v3.mp4").unlink()
    out = scan(other, d, "--out", report, "--settle", 0, "--keep-missing")
    assert counts(out) == (0, 3, 0)
    assert [r["status"] for r in rows(report)] == ["ok", "ok", "no_face", "missing"]
    out = scan(other, d, "--out", report, "--settle", 0)
    assert len(rows(report)) == 3


def test_a_kept_missing_row_has_no_verdict_or_score_and_says_what_the_last_scan_found(
        tmp_path, clips, tiny_model, no_face_video):
    """--keep-missing (issue 28): the row stays, with status missing, the video as last
    scanned, and no verdict, score or faces (README: the verdict is empty unless ok); its
    error cell says what the last scan found."""
    d, report, faces = folder_of(tmp_path, clips, 2), tmp_path / "r.csv", tmp_path / "f.csv"
    copy(no_face_video, d / "v2.mp4")
    scan(tiny_model, d, "--out", report, "--settle", 0, "--frames-out", faces)
    last = {r["path"]: r for r in rows(report)}
    assert [r["status"] for r in last.values()] == ["ok", "ok", "no_face"]
    (d / "v0.mp4").unlink()
    (d / "v2.mp4").unlink()
    out = scan(tiny_model, d, "--out", report, "--settle", 0, "--frames-out", faces,
               "--keep-missing")
    assert "2 missing" in out.stderr
    got = {r["path"]: r for r in rows(report)}
    v0, v1, v2 = (str(d / f"v{i}.mp4") for i in range(3))
    assert [got[p]["status"] for p in (v0, v1, v2)] == ["missing", "ok", "missing"]
    for p in (v0, v2):
        assert [got[p][k] for k in ("verdict", "fake_score", "fake_score_median",
                                    "fake_score_max", "fake_share", "note")] == [
            "", "", "", "", "", ""], got[p]
        assert got[p]["duration_s"] == last[p]["duration_s"] != ""  # the video as last seen
    old = last[v0]
    assert got[v0]["error"] == ("no longer found (--keep-missing); the last scan said "
                                f"{old['verdict']}, fake_score {float(old['fake_score']):.3f}")
    assert got[v2]["error"] == ("no longer found (--keep-missing); the last scan said no_face: "
                                + last[v2]["error"])
    assert {r["path"] for r in rows(faces)} == {v1}  # the frames CSV: current faces only


def test_a_second_run_is_refused_while_one_holds_the_lock(tmp_path, clips, tiny_model):
    d, report = folder_of(tmp_path, clips, 1), tmp_path / "r.csv"
    state = tmp_path / "elsewhere.sqlite"
    with open(f"{state}.lock", "a") as held:  # what a running scan holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        t = time.monotonic()
        out = scan(tiny_model, d, "--out", report, "--state", state, check=False)
        assert out.returncode == EXIT_LOCKED, out.stderr
        assert "another scan is running" in out.stderr
        assert time.monotonic() - t < 30  # at once: it never waits for the lock
    assert not report.exists()


def children(pid: int) -> list[int]:
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:  # it has ended
        pass
    return kids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigkill_mid_folder_then_resume_keeps_every_row_once(tmp_path, clips, tiny_model):
    d = folder_of(tmp_path, clips * 2)  # 8 videos
    report, state = tmp_path / "r.csv", tmp_path / "r.csv.state.sqlite"
    cmd = [sys.executable, "-m", "screener", "scan", "--model", str(tiny_model), "--frames", "8",
           "--batch-size", "1", "--settle", "0", str(d), "--out", str(report)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    done = 0
    deadline = time.monotonic() + 240
    workers = []
    try:
        while done < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            done = stored_rows(state)
        workers = children(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = stored_rows(state)
    assert 2 <= done < 8, f"the run was not killed mid-folder ({done} rows)"
    # Its worker processes do not outlive it (they would wait for work for ever).
    assert len(workers) >= 2
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)
    assert not report.exists()  # written only at the end, atomically

    out = scan(tiny_model, d, "--out", report, "--settle", 0)
    assert counts(out) == (8 - done, done, 0)
    paths = [r["path"] for r in rows(report)]
    assert paths == sorted(set(paths)) and len(paths) == 8
    assert stored_rows(state) == 8


def stored_rows(state: Path) -> int:
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def test_a_growing_file_is_deferred_then_scanned_once_it_settles(tmp_path, clips, tiny_model):
    d, report = tmp_path / "in", tmp_path / "r.csv"
    d.mkdir()
    out = scan(tiny_model, d, "--out", report, "--settle", 2, check=False)
    assert out.returncode == 2 and "no video found" in out.stderr and not report.exists()
    # A drop folder scanned from cron may be empty: --allow-empty says that is normal.
    drop = ("--out", report, "--settle", 2, "--allow-empty")
    out = scan(tiny_model, d, *drop)
    assert counts(out) == (0, 0, 0) and rows(report) == []
    data = clips[0].read_bytes()
    growing = d / "copying.mp4"
    growing.write_bytes(data[:len(data) // 3])
    out = scan(tiny_model, d, *drop)
    assert counts(out) == (0, 0, 1) and rows(report) == []
    with open(growing, "ab") as f:
        f.write(data[len(data) // 3:])
    last_write = time.monotonic()
    out = scan(tiny_model, d, *drop)
    if time.monotonic() - last_write < 2:  # a slow machine may already be past the 2 s
        assert counts(out) == (0, 0, 1) and rows(report) == []
    time.sleep(max(0.0, 2.2 - (time.monotonic() - last_write)))
    out = scan(tiny_model, d, *drop)
    assert counts(out) == (1, 0, 0)
    assert [r["status"] for r in rows(report)] == ["ok"]


def test_a_corrupt_state_file_is_an_error_with_a_way_out(tmp_path, clips, tiny_model):
    d, report = folder_of(tmp_path, clips, 2), tmp_path / "r.csv"
    state = tmp_path / "r.csv.state.sqlite"
    report.write_text("the previous report\n")
    state.write_bytes(b"this is not a database " * 200)
    out = scan(tiny_model, d, "--out", report, "--settle", 0, check=False)
    assert out.returncode == EXIT_STATE, out.stderr
    assert "--rescan" in out.stderr and "--state" in out.stderr
    assert report.read_text() == "the previous report\n"  # never a silent empty report

    out = scan(tiny_model, d, "--out", report, "--settle", 0, "--rescan")
    assert counts(out) == (2, 0, 0) and len(rows(report)) == 2
    assert Path(f"{state}.unusable").exists()  # set aside, not deleted


def test_ctrl_c_records_finished_videos_and_rewrites_the_report(monkeypatch, tmp_path, clips,
                                                               tiny_model):
    """In process, deterministic: the engine is interrupted after two videos."""
    from click.testing import CliRunner

    from screener.cli import main
    from screener.engines.local import LocalEngine

    real = LocalEngine.run

    def interrupted(self, paths):
        for i, r in enumerate(real(self, paths)):
            if i == 2:
                raise KeyboardInterrupt
            yield r
    monkeypatch.setattr(LocalEngine, "run", interrupted)
    d, report = folder_of(tmp_path, clips), tmp_path / "r.json"
    args = ["scan", str(d), "--model", str(tiny_model), "--frames", "2", "--batch-size", "1",
            "--out", str(report)]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 130 and "interrupted after scanning 2 videos" in r.stderr
    doc = json.loads(report.read_text())
    assert doc["complete"] is False and len(doc["videos"]) == 2
    monkeypatch.setattr(LocalEngine, "run", real)
    r = CliRunner().invoke(main, args + ["--settle", "0"], catch_exceptions=False)
    assert r.exit_code == 0 and "scanned 2, reused 2" in r.stderr
    doc = json.loads(report.read_text())
    assert doc["complete"] is True and len(doc["videos"]) == 4
