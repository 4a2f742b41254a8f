"""Outputs: never an input or another output, whole or absent, every write failure a clear
exit code (never a traceback), any legal file name. Real files, links, devices, mounts and
subprocesses: /dev/full, a read-only bind mount and a full tmpfs where this process may mount
(as root, like CI), skipped otherwise."""
from __future__ import annotations

import csv
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from screener.cli import main

from helpers import copy, without_root_powers

REPO = Path(__file__).parents[1]


def run(*args):
    return CliRunner().invoke(main, [*map(str, args)], catch_exceptions=False)


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "screener", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ours(stderr: str) -> list[str]:
    """screener's own lines (native libraries may print their own on a first model load)."""
    return [line for line in stderr.splitlines() if line.startswith("screener:")]


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def inputs(tmp_path, face_video):
    d = tmp_path / "in"
    a, b = copy(face_video, d / "a.mp4"), copy(face_video, d / "b.mp4")
    os.symlink(a, d / "link.csv")
    os.link(a, d / "hard.csv")
    return d


# --- an output is an input, or another output -------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--out", "{in}/a.mp4"],                                         # with a state
    ["--no-state", "--out", "{in}/a.mp4"],                           # streamed
    ["--no-state", "--out", "{in}/link.csv"],                        # a symlink to an input
    ["--no-state", "--out", "{in}/hard.csv"],                        # a hard link to one
    ["--no-state", "--out", "{tmp}/r.csv", "--frames-out", "{in}/a.mp4"],
    ["--no-state", "--out", "{tmp}/r.csv", "--html", "{in}/b.mp4"],
    ["--out", "{tmp}/r.csv", "--state", "{in}/a.mp4"],
    ["--out", "{tmp}/r.csv", "--log-file", "{in}/b.mp4"],
    ["--out", "{model}"],                                            # the model file
    ["--out", "{card}"],                                             # and its card
], ids=["out", "out-streamed", "symlink", "hard-link", "frames-out", "html", "state",
        "log-file", "model", "model-card"])
def test_an_output_that_is_an_input_is_refused_before_anything_is_written(
        inputs, tmp_path, tiny_model, args):
    model = copy(tiny_model, tmp_path / "model" / "tiny.keras")  # the session's stays safe
    copy(tiny_model.with_suffix(".json"), model.with_suffix(".json"))
    args = [a.format(**{"in": inputs, "tmp": tmp_path, "model": model,
                        "card": model.with_suffix(".json")}) for a in args]
    protected = [inputs / "a.mp4", inputs / "b.mp4", model, model.with_suffix(".json")]
    before = {p: digest(p) for p in protected}
    listing = sorted(os.listdir(inputs)), sorted(os.listdir(tmp_path))
    r = run("scan", inputs / "a.mp4", inputs / "b.mp4", "--model", model, "--frames", 1, *args)
    assert r.exit_code == 2, r.output
    assert "is the same file as" in r.stderr and "refusing to overwrite it" in r.stderr
    assert {p: digest(p) for p in protected} == before
    assert (sorted(os.listdir(inputs)), sorted(os.listdir(tmp_path))) == listing  # no file made


@pytest.mark.parametrize("args", [
    ["--out", "r.csv", "--frames-out", "r.csv"],
    ["--no-state", "--out", "r.csv", "--frames-out", "sub/../r.csv"],
    ["--out", "r.csv", "--html", "r.csv"],
    ["--out", "r.csv", "--state", "r.csv"],
    ["--out", "r.csv", "--log-file", "r.csv"],
    ["--out", "r.csv", "--html", "r.csv.state.sqlite"],           # the default state
    ["--out", "r.csv", "--state", "s.sqlite", "--frames-out", "s.sqlite.lock"],
    ["--no-state", "--out", "r.csv", "--html", "link.html"],       # a link to --out
])
def test_two_outputs_that_are_one_file_are_refused(face_video, tmp_path, tiny_model,
                                                   monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    os.symlink("r.csv", "link.html")
    r = run("scan", face_video, "--model", tiny_model, "--frames", 1, *args)
    assert r.exit_code == 2, r.output
    assert "are the same file: each output needs its own" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["link.html", "sub"]


def device(tmp_path: Path, name: str) -> Path:
    """A device node of our own (as root), so that a regression replaces it and not the
    system's (an atomic rename over /dev/full once did); else the system's, which a user
    other than root cannot replace."""
    major_minor = {"null": (1, 3), "full": (1, 7)}[name]
    path = tmp_path / name
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(*major_minor))
        return path
    except (PermissionError, OSError):
        if os.geteuid() == 0 or not os.path.exists(f"/dev/{name}"):
            pytest.skip(f"cannot make a {name} device here")
        return Path(f"/dev/{name}")


def test_devices_and_pipes_as_outputs_are_streams_not_files(face_video, tiny_model, tmp_path):
    """A null device twice is not a conflict: nothing in it can be overwritten. A pipe is
    written as it is (a reader takes the rows)."""
    null = device(tmp_path, "null")
    r = run("scan", face_video, "--model", tiny_model, "--frames", 1, "--out", null,
            "--frames-out", null, "--state", tmp_path / "s.sqlite")
    assert r.exit_code == 0, r.output
    assert stat.S_ISCHR(os.stat(null).st_mode)  # still a device, not a file renamed over it
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    p = subprocess.Popen([sys.executable, "-m", "screener", "scan", str(face_video), "--model",
                          str(tiny_model), "--frames", "1", "--no-state", "--out", str(pipe)],
                         cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        with open(pipe, encoding="utf-8") as f:  # waits for the scan to open it
            rows = list(csv.DictReader(f))
        assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
    finally:
        if p.poll() is None:
            p.kill()
    assert [r["path"] for r in rows] == [str(face_video)]
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)


def test_screener_report_never_writes_over_what_it_reads(face_video, tiny_model, tmp_path):
    out = tmp_path / "r.csv"
    assert run("scan", face_video, "--model", tiny_model, "--frames", 1, "--out",
               out).exit_code == 0
    before = digest(out)
    for html in (out, tmp_path / "r.csv.state.sqlite"):
        r = run("report", "--from", out, "--html", html)
        assert r.exit_code == 2 and "refusing to overwrite it" in r.stderr
    assert digest(out) == before


@pytest.mark.parametrize("source", ["state", "report"])
def test_screener_report_never_writes_over_a_scanned_video_or_the_model(face_video, tiny_model,
                                                                        tmp_path, source):
    """The page of `screener report` is refused over a video of the scan, the scan's model file
    or its card (before: the video became an HTML page, exit 0)."""
    video = copy(face_video, tmp_path / "in" / "v.mp4")
    model = copy(tiny_model, tmp_path / "model" / "m.keras")
    copy(tiny_model.with_suffix(".json"), model.with_suffix(".json"))
    out = tmp_path / "r.json"
    assert run("scan", video.parent, "--model", model, "--frames", 1, "--out", out).exit_code == 0
    where = ["--state", f"{out}.state.sqlite"] if source == "state" else ["--from", out]
    if source == "report":
        os.unlink(f"{out}.state.sqlite")  # rows only, from the report itself
    for target in (video, model, model.with_suffix(".json")):
        before = digest(target)
        r = run("report", *where, "--html", target)
        assert r.exit_code == 2 and "refusing to overwrite it" in r.stderr, r.stderr
        assert digest(target) == before


@pytest.mark.parametrize("device", ["/dev/null", "/dev/stdout"])
def test_a_report_that_is_a_device_keeps_no_state(face_video, tiny_model, device):
    """`--out /dev/null` (or /dev/stdout) without --no-state: the report streams there and no
    state or lock is made beside it (before: /dev/null.state.sqlite and its lock)."""
    made = [Path(f"{device}.state.sqlite{s}") for s in ("", ".lock", "-wal", "-shm")]
    assert not any(p.exists() for p in made)
    try:
        p = cli("scan", face_video, "--model", tiny_model, "--frames", 1, "--out", device)
        assert p.returncode == 0, p.stderr[-2000:]
        assert not any(p.exists() for p in made)
        if device == "/dev/stdout":
            assert p.stdout.startswith("path,status,")
    finally:
        for m in made:
            if m.exists():
                m.unlink()


# --- write failures: one line, the documented exit code, no half report ------------------------

@pytest.mark.parametrize("args", [
    ["--no-state", "--out", "{full}"],
    ["--state", "{tmp}/s.sqlite", "--out", "{full}"],
    ["--no-state", "--out", "{tmp}/r.csv", "--frames-out", "{full}"],
    ["--no-state", "--out", "{tmp}/r.csv", "--html", "{full}"],
    ["--no-state", "--out", "{tmp}/r.csv", "--log-file", "{full}"],
], ids=["streamed", "with-state", "frames-out", "html", "log-file"])
@pytest.mark.slow
def test_a_full_device_is_exit_4_and_one_line(face_video, tiny_model, tmp_path, args):
    """/dev/full: every write fails with ENOSPC."""
    full = device(tmp_path, "full")
    args = [a.format(tmp=tmp_path, full=full) for a in args]
    p = cli("scan", face_video, "--model", tiny_model, "--frames", 1, *args)
    assert p.returncode == 4, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert [l for l in ours(p.stderr) if not l.startswith("screener: 1 video")] == [
        "screener: error: cannot write "
        + ("the log file " if "--log-file" in args else "")
        + f"{full}: No space left on device"]
    assert not (tmp_path / "r.csv").exists() or "--log-file" in args or "--html" in args
    assert stat.S_ISCHR(os.stat(full).st_mode)


def _mount(args: list[str], target: Path) -> None:
    p = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount here ({p.stderr.strip() or p.returncode}): needs root")


@pytest.fixture
def mounts():
    """mounts(args, target): mount, skip the test where that is not allowed; unmounted after."""
    done: list[Path] = []

    def mount(args, target):
        _mount(args, target)
        done.append(target)
    yield mount
    for target in reversed(done):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_state_is_exit_6_and_one_line(face_video, tiny_model, tmp_path, mounts,
                                                  what):
    d = tmp_path / "state"
    d.mkdir()
    state, out = d / "s.sqlite", tmp_path / "r.csv"
    video = copy(face_video, tmp_path / "in" / "a.mp4")
    base = ["scan", video.parent, "--model", tiny_model, "--frames", 1, "--settle", 0,
            "--state", state, "--out", out]
    assert cli(*base).returncode == 0
    report = digest(out)
    target = state if what == "file" else d
    mounts(["--bind", str(target)], target)
    mounts(["-o", "remount,bind,ro"], target)
    copy(face_video, tmp_path / "in" / "b.mp4")  # something to record
    p = cli(*base)
    assert p.returncode == 6, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    lines = ours(p.stderr)
    assert len(lines) == 1 and lines[0].startswith("screener: error: ") and str(state) in lines[0]
    assert digest(out) == report  # the report is left as it was


@pytest.fixture
def full_disk(tmp_path, mounts):
    """A small tmpfs, filled to the last byte."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounts(["-t", "tmpfs", "-o", "size=256k", "tmpfs"], disk)
    try:
        with open(disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    return disk


@pytest.mark.slow
@pytest.mark.parametrize("mode,free", [("state-beside", 0), ("state-beside", 4096),
                                       ("state-elsewhere", 0), ("streamed", 0)])
def test_a_full_disk_is_exit_4_no_space_and_no_half_report(face_video, tiny_model, tmp_path,
                                                           full_disk, mode, free):
    """`free`: one page left, so the lock file is written and SQLite runs out of room."""
    os.truncate(full_disk / "filler", os.path.getsize(full_disk / "filler") - free)
    video = copy(face_video, tmp_path / "in" / "a.mp4")
    out = full_disk / "r.csv"
    extra = {"state-beside": [], "state-elsewhere": ["--state", tmp_path / "s.sqlite"],
             "streamed": ["--no-state"]}[mode]
    p = cli("scan", video.parent, "--model", tiny_model, "--frames", 1, "--settle", 0,
            "--out", out, *extra)
    assert p.returncode == 4, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    lines = ours(p.stderr)
    assert len(lines) == 1 and "no space left on device" in lines[0].lower(), lines
    left = os.listdir(full_disk)
    assert "r.csv" not in left and not [n for n in left if n.startswith(".r.csv")], left
    if mode == "state-elsewhere":  # what was computed is kept: the next run reuses it
        (full_disk / "filler").unlink()
        p = cli("scan", video.parent, "--model", tiny_model, "--frames", 1, "--out", out,
                *extra)
        assert p.returncode == 0 and "scanned 0, reused 1" in p.stderr, p.stderr[-3000:]
        assert len(read_rows(out)) == 1


def test_extract_on_a_full_disk_is_exit_4(face_video, tmp_path, full_disk):
    p = cli("extract", face_video, "--out", full_disk / "ds", "--frames", 2)
    assert p.returncode == 4, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    lines = ours(p.stderr)
    assert len(lines) == 1 and "no space left on device" in lines[0].lower(), lines


# --- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize("state", [True, False])
def test_any_legal_report_name_works(face_video, tiny_model, tmp_path, state):
    out = tmp_path / ("r" * 246 + ".csv")   # 250 bytes: NAME_MAX is 255
    frames = tmp_path / ("f" * 246 + ".csv")
    args = ["scan", face_video, "--model", tiny_model, "--frames", 1, "--out", out,
            "--frames-out", frames, *([] if state else ["--no-state"])]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert len(read_rows(out)) == 1 and len(read_rows(frames)) == 1
    if state:  # its state has a name too (cut short, with a hash of the whole name)
        r = run(*args)
        assert r.exit_code == 0 and "scanned 0, reused 1" in r.stderr, r.output
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


@pytest.mark.slow
def test_a_state_made_writable_again_works_again(face_video, tiny_model, tmp_path):
    """A run while the state was read-only leaves SQLite's side files read-only too; once the
    state is writable again, the next run works (before: exit 6 until -shm was deleted)."""
    video = copy(face_video, tmp_path / "in" / "a.mp4")
    state, out = tmp_path / "r.csv.state.sqlite", tmp_path / "r.csv"
    base = [*without_root_powers(), sys.executable, "-m", "screener", "scan", str(video.parent),
            "--model", str(tiny_model), "--frames", "1", "--settle", "0", "--out", str(out)]
    assert subprocess.run(base, capture_output=True, cwd=REPO).returncode == 0
    state.chmod(0o444)
    copy(face_video, tmp_path / "in" / "b.mp4")  # something to record
    p = subprocess.run(base, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 6, p.stderr[-3000:]
    assert ours(p.stderr) == [f"screener: error: cannot write the scan state {state}: it is "
                              f"read-only; make it writable (chmod u+w {state}), or pass "
                              "--state with another file"]
    state.chmod(0o644)
    p = subprocess.run(base, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(read_rows(out)) == 2
