"""Named pipes, sockets and devices among the inputs: each an error row "not a regular file",
never opened (a read from a pipe blocks for ever, from /dev/zero never ends), in a scan with
and without a state and in extract. Real pipes and sockets, the CLI in a subprocess with a
time limit: a scan that hangs fails the test instead of hanging the suite. The Ray engine's
cases are in test_ray.py."""
from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import copy

REPO = Path(__file__).parents[1]
LIMIT_S = 240  # far longer than these scans take, even on a loaded machine


def cli(*args):
    return subprocess.run([sys.executable, "-m", "screener", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=LIMIT_S)


def read_rows(path, key="path"):
    with open(path, newline="", encoding="utf-8") as f:
        return {Path(r[key]).name: r for r in csv.DictReader(f)}


@pytest.fixture
def special(tmp_path, face_video, monkeypatch):
    """A drop folder with a video, a named pipe and a socket, both with video names; and a
    pipe outside it, to be named on the command line."""
    d = tmp_path / "drop"
    copy(face_video, d / "a.mp4")
    os.mkfifo(d / "pipe.mp4")
    monkeypatch.chdir(d)  # a socket's path must be short: bind it by its relative name
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("sock.mp4")
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "named.mp4")
    yield d, tmp_path / "named.mp4"
    sock.close()


SPECIAL = {"pipe.mp4": "a named pipe", "sock.mp4": "a socket", "named.mp4": "a named pipe",
           "zero": "a character device"}


def check_rows(rows):
    assert set(rows) == {"a.mp4", *SPECIAL}
    assert rows["a.mp4"]["status"] == "ok"
    for name, kind in SPECIAL.items():
        assert rows[name]["status"] == "error"
        assert rows[name]["error"] == f"not a regular file ({kind})", name


@pytest.mark.slow
@pytest.mark.parametrize("state", [True, False], ids=["state", "no-state"])
def test_pipes_sockets_and_devices_are_error_rows_in_a_scan(special, tiny_model, tmp_path,
                                                           state):
    """The cron case: the state's planning fingerprints new files, holding the lock; a pipe
    there wedged every later run. /dev/zero would be read for ever."""
    drop, named = special
    out = drop / "r.csv"  # the report in the drop folder, as in the issue
    args = [drop, named, "/dev/zero", "--model", tiny_model, "--frames", 1, "--out", out,
            *(["--settle", 0] if state else ["--no-state"])]
    p = cli("scan", *args)
    assert p.returncode == 0, p.stderr[-3000:]
    check_rows(read_rows(out))
    if state:  # the lock was let go, and a rerun says the same
        p = cli("scan", *args)
        assert p.returncode == 0, p.stderr[-3000:]
        assert "scanned 4, reused 1" in p.stderr
        check_rows(read_rows(out))


@pytest.mark.slow
def test_pipes_sockets_and_devices_are_errors_in_extract(special, tmp_path):
    drop, named = special
    out = tmp_path / "ds"
    p = cli("extract", drop, named, "/dev/zero", "--out", out, "--label", "real",
            "--frames", 2)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_rows(out / "videos.csv", key="source_path")
    check_rows(rows)
    assert "4 errors" in p.stderr
