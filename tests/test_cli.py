"""`screener scan`: options, report files, summary, exit codes; a real subprocess for a folder
scan and for Ctrl-C."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from screener.cli import main
from screener.verdict import COLUMNS, FACE_COLUMNS

from helpers import (CONST_P_FAKE, FORGED_NAME, FORGED_SHOWN, bad_inputs, copy, cut_short,
                     signal_when, streamed_rows)

REPO = Path(__file__).parents[1]


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folder(tmp_path_factory, face_video, no_face_video, two_face_video):
    root = tmp_path_factory.mktemp("scan")
    copy(face_video, root / "a_face.mp4")
    copy(no_face_video, root / "b_no_face.mp4")
    copy(two_face_video, root / "c" / "two faces.mp4")
    copy(face_video, root / "c" / "=1+1.mp4")
    bad_inputs(root / "d_bad", face_video)
    return root


def run(*args, **kw):
    return CliRunner().invoke(main, ["scan", *map(str, args)], catch_exceptions=False, **kw)


@pytest.mark.slow
def test_folder_scan_in_a_subprocess(folder, tiny_model, tmp_path):
    out, frames_out = tmp_path / "report.csv", tmp_path / "frames.csv"
    p = subprocess.run([sys.executable, "-m", "screener", "scan", str(folder), "--model",
                        str(tiny_model), "--frames", "3", "--out", str(out), "--frames-out",
                        str(frames_out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout == ""                     # not a terminal: no table, no progress
    ours = [l for l in p.stderr.splitlines() if l.startswith("screener:")]
    # 3 frames are 3 faces: each verdict rests on few faces, and says so
    assert ours[-1].startswith("screener: 9 videos: 3 fake, 0 real, 1 no face, 5 errors, "
                               "3 verdicts on low evidence in ")
    warnings = [l for l in ours if l.startswith("screener: warning: ")]
    for name in ("audio_only", "notes", "truncated", "unknown_codec", "zero"):
        assert any(f"d_bad/{name}.mp4: " in l for l in warnings), name
    rows = read_rows(out)
    assert list(rows[0]) == list(COLUMNS)
    assert [os.path.relpath(r["path"].lstrip("'"), folder) for r in rows] == [
        "a_face.mp4", "b_no_face.mp4", "c/=1+1.mp4", "c/two faces.mp4", "d_bad/audio_only.mp4",
        "d_bad/notes.mp4", "d_bad/truncated.mp4", "d_bad/unknown_codec.mp4", "d_bad/zero.mp4"]
    assert [r["status"] for r in rows] == ["ok", "no_face", "ok", "ok"] + ["error"] * 5
    assert rows[0]["verdict"] == "FAKE" and float(rows[0]["fake_score"]) == CONST_P_FAKE
    assert all(r["error"] for r in rows[4:]) and all(r["fake_score"] == "" for r in rows[4:])
    faces = read_rows(frames_out)
    assert list(faces[0]) == list(FACE_COLUMNS)
    assert len(faces) == 3 + 3 + 6                     # 3 frames x one face, and two faces
    assert {(f["path"].endswith("two faces.mp4"), f["person"]) for f in faces} == {
        (False, "1"), (True, "1"), (True, "2")}


@pytest.mark.slow
def test_hostile_names_are_escaped_in_csv(folder, tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(folder / "c")
    out = tmp_path / "r.csv"
    r = run("*.mp4", "--model", tiny_model, "--frames", 1, "--out", out, "--frames-out",
            tmp_path / "f.csv")
    assert r.exit_code == 0
    assert [x["path"] for x in read_rows(out)] == ["'=1+1.mp4", "two faces.mp4"]
    assert read_rows(tmp_path / "f.csv")[0]["path"] == "'=1+1.mp4"


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "default"])
def test_hostile_names_never_reach_the_terminal_or_the_log_raw(tmp_path, face_video, tiny_model,
                                                              quiet):
    """A clip named to forge a summary line and colour the terminal, cut short so that the
    worker process reading it warns about it (naming it) as well as the main process."""
    d = tmp_path / "in"
    copy(face_video, d / "a.mp4")
    cut_short(face_video, d / FORGED_NAME)
    log = tmp_path / "scan.log"
    p = subprocess.run([sys.executable, "-m", "screener", "scan", str(d), "--model",
                        str(tiny_model), "--frames", "12", "--workers", "2", "--no-state",
                        "--out", str(tmp_path / "r.csv"), "--log-file", str(log),
                        *(["-q"] if quiet else ["-v"])],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    for text in (p.stderr, log.read_text(encoding="utf-8")):
        assert "\x1b" not in text
        assert not [line for line in text.splitlines() if "screener: 0 videos" in line
                    and FORGED_SHOWN not in line]
    ours = [line for line in p.stderr.splitlines() if line.startswith("screener:")]
    if quiet:  # errors only, and there are none
        assert ours == []
    else:  # the worker's own warning, escaped as the main process escapes its lines
        assert f"screener: warning: {d}/{FORGED_SHOWN}: ended after" in p.stderr
    assert FORGED_SHOWN in log.read_text(encoding="utf-8")
    assert [r["path"] for r in read_rows(tmp_path / "r.csv")] == [
        str(d / "a.mp4"), str(d / FORGED_NAME)]


def test_threshold_and_fail_on_fake(face_video, tiny_model, tmp_path):
    out = tmp_path / "r.csv"
    r = run(face_video, "--model", tiny_model, "--frames", 2, "--out", out, "--fail-on-fake")
    assert r.exit_code == 1
    assert read_rows(out)[0]["verdict"] == "FAKE"
    r = run(face_video, "--model", tiny_model, "--frames", 2, "--out", out, "--fail-on-fake",
            "--threshold", "0.9")
    assert r.exit_code == 0
    row = read_rows(out)[0]
    assert (row["verdict"], row["threshold"]) == ("REAL", "0.9")


@pytest.mark.slow
def test_json_to_stdout_and_options(two_face_video, no_face_video, tiny_model):
    r = run(two_face_video, no_face_video, "--model", tiny_model, "--format", "json",
            "--every", "0.2", "--batch-size", 4, "-q")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["complete"] is True and doc["model"]["name"] == "tiny-test"
    assert doc["options"] == {"frames": 32, "every_s": 0.2, "people": True, "min_face": 64}
    a, b = doc["videos"]
    assert (a["frames_sampled"], a["faces_scored"], a["status"]) == (3, 6, "ok")
    # Two people in 3 frames: too few faces to judge either, so every face counts, pooled.
    assert (a["people"], a["fake_person"]) == (0, None) and a["note"]
    assert b["status"] == "no_face" and b["fake_score"] is None
    assert doc["summary"]["videos"] == 2


def test_format_follows_out_extension(face_video, tiny_model, tmp_path):
    r = run(face_video, "--model", tiny_model, "--frames", 1, "--out", tmp_path / "r.json")
    assert r.exit_code == 0
    assert json.loads((tmp_path / "r.json").read_text())["videos"][0]["status"] == "ok"


def test_missing_path_and_no_video(tmp_path, tiny_model):
    r = run(tmp_path / "nope.mp4", "--model", tiny_model)
    assert r.exit_code == 2 and "no such file or folder" in r.stderr and "nope.mp4" in r.stderr
    (tmp_path / "notes.txt").write_text("x")
    r = run(tmp_path, "--model", tiny_model)
    assert r.exit_code == 2 and "no video found" in r.stderr
    r = run(tmp_path, "--model", tiny_model, "--out", tmp_path / "r.csv")  # with a state too
    assert r.exit_code == 2 and "no video found" in r.stderr
    assert not (tmp_path / "r.csv").exists()
    r = run(tmp_path, "--model", tiny_model, "--allow-empty")
    assert r.exit_code == 2 and "--allow-empty needs a state" in r.stderr
    r = run(tmp_path / "*.mp4", "--model", tiny_model)
    assert r.exit_code == 2 and "no file matches" in r.stderr


def test_a_glob_that_matches_nothing_warns_and_the_scan_goes_on(tmp_path, face_video, tiny_model):
    """README's `screener scan clips/ '*.mov'` on a folder without .mov files (issue 28)."""
    clip = copy(face_video, tmp_path / "clips" / "a.mp4")
    glob = str(tmp_path / "*.mov")
    r = run(tmp_path / "clips", glob, "--model", tiny_model, "--out", tmp_path / "r.csv",
            "--no-state")
    assert r.exit_code == 0, r.stderr
    assert f"screener: warning: no file matches {glob!r}; scanning the other PATHs" in \
        r.stderr.splitlines()
    assert (tmp_path / "r.csv").read_text().splitlines()[1].startswith(f"{clip},ok,")


def test_every_help_fits_80_columns_uncut():
    """`screener --help` lists each command's whole description and no help line runs past
    80 columns; scan's exit codes name the missing extras as README does (issue 28)."""
    texts = {}
    for command in ([], ["scan"], ["report"], ["extract"], ["models"]):
        r = CliRunner().invoke(main, [*command, "--help"], terminal_width=80)
        assert r.exit_code == 0, r.output
        texts[" ".join(command)] = r.output
        assert [ln for ln in r.output.splitlines() if len(ln) > 80] == [], command
    commands = texts[""].split("Commands:")[1]
    assert "..." not in commands and len(commands.strip().splitlines()) == 4
    assert "the ray or s3 extra missing" in " ".join(texts["scan"].split())


def test_bad_options_are_usage_errors(face_video):
    for bad in (["--frames", "0"], ["--every", "0"], ["--threshold", "1.5"],
                ["--format", "xml"], ["--batch-size", "0"]):
        assert run(face_video, *bad).exit_code == 2, bad


def test_model_errors(face_video, tmp_path):
    r = run(face_video, "--model", tmp_path / "missing.keras")
    assert r.exit_code == 3 and "model file not found" in r.stderr
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a model")
    r = run(face_video, "--model", junk)
    assert r.exit_code == 3 and "junk.keras" in r.stderr


def test_report_cannot_be_written(face_video, tiny_model, tmp_path):
    r = run(face_video, "--model", tiny_model, "--out", tmp_path / "no" / "such" / "r.csv")
    assert r.exit_code == 4 and "cannot write" in r.stderr


@pytest.mark.slow
def test_interrupt_keeps_rows(monkeypatch, face_video, tiny_model, tmp_path):
    """Ctrl-C in the middle: rows written so far stay, exit 130 (in process, deterministic)."""
    from screener.engines.local import LocalEngine
    real = LocalEngine.run

    def interrupted(self, paths):
        for i, r in enumerate(real(self, paths)):
            if i == 2:
                raise KeyboardInterrupt
            yield r
    monkeypatch.setattr(LocalEngine, "run", interrupted)
    out = tmp_path / "r.csv"
    paths = [copy(face_video, tmp_path / f"v{i}.mp4") for i in range(4)]
    # --no-state: the streamed report (with a state, the report is rewritten at the end:
    # test_incremental.py)
    r = run(*paths, "--model", tiny_model, "--frames", 1, "--batch-size", 1, "--out", out,
            "--no-state")
    assert r.exit_code == 130 and "interrupted after 2 of 4 videos" in r.stderr
    assert [Path(x["path"]).name for x in read_rows(out)] == ["v0.mp4", "v1.mp4"]


@pytest.mark.slow
def test_sigint_in_a_subprocess(tmp_path, face_video, tiny_model):
    """A real Ctrl-C (SIGINT) while a scan runs: clean exit 130, finished rows on disk."""
    paths = [copy(face_video, tmp_path / "in" / f"v{i:02d}.mp4") for i in range(40)]
    out = tmp_path / "r.csv"
    p = subprocess.Popen([sys.executable, "-m", "screener", "scan", str(tmp_path / "in"),
                          "--model", str(tiny_model), "--frames", "6", "--batch-size", "1",
                          "--out", str(out), "--no-state"], cwd=REPO, stderr=subprocess.PIPE,
                         text=True)
    err = signal_when(p, lambda: streamed_rows(out) >= 2)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted after" in err
    rows = read_rows(out)
    assert 2 <= len(rows) < len(paths)
    assert [Path(r["path"]).name for r in rows] == [f"v{i:02d}.mp4" for i in range(len(rows))]
    assert all(r["status"] == "ok" for r in rows)


@pytest.mark.slow
def test_sigint_while_a_worker_is_stuck_ends_at_once(tmp_path, face_video, tiny_model):
    """Ctrl-C while a worker is stuck in a video (a decoder that never returns): the scan
    ends with 130 at once, rows kept, instead of waiting at exit for the video in flight."""
    for name in ["v00.mp4", "v01.mp4", "v02-hangme.mp4", "v03.mp4"]:
        copy(face_video, tmp_path / "in" / name)
    out = tmp_path / "r.csv"
    p = subprocess.Popen([sys.executable, "-m", "screener", "scan", str(tmp_path / "in"),
                          "--model", str(tiny_model), "--frames", "1", "--batch-size", "1",
                          "--workers", "2",
                          "--out", str(out), "--no-state"], cwd=REPO, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "SCREENER_TEST_HANG_WORKER_ON": "hangme"})
    # a second later v03 is done too; its row waits behind the stuck one
    err = signal_when(p, lambda: streamed_rows(out) >= 2, settle_s=1, timeout_s=60)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Exception" not in err, err[-2000:]
    assert [Path(r["path"]).name for r in read_rows(out)] == ["v00.mp4", "v01.mp4"]


@pytest.mark.slow
@pytest.mark.parametrize("state,read_header", [(False, True), (False, False), (True, False)])
def test_reader_of_stdout_goes_away(tmp_path, face_video, tiny_model, state, read_header):
    """`screener scan DIR --out - | head -1`: the scan stops quietly with 141 (SIGPIPE's status),
    whether the reader left after the header (rows follow per video) or before anything was
    written (with --state the report is written whole at the end: small, it would fit in the
    pipe's buffer if the reader were still there)."""
    for i in range(12):
        copy(face_video, tmp_path / "in" / f"v{i:02d}.mp4")
    extra = ["--state", str(tmp_path / "s.sqlite")] if state else ["--no-state"]
    p = subprocess.Popen([sys.executable, "-m", "screener", "scan", str(tmp_path / "in"),
                          "--model", str(tiny_model), "--frames", "1", "--batch-size", "1",
                          "--out", "-", *extra], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        if read_header:
            assert p.stdout.readline().startswith("path,")
        p.stdout.close()  # what head does after its first line
        err = p.stderr.read()
        p.wait(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 141, err[-2000:]
    assert "Traceback" not in err and "Broken pipe" not in err and "Exception" not in err, err


def test_min_face(face_video, tiny_model):
    # the face in face_video is ~97 px wide: scored at the default, too small above that
    r = run(face_video, "--model", tiny_model, "--frames", 2, "--min-face", 200, "-q")
    assert r.exit_code == 0
    row = list(csv.DictReader(r.stdout.splitlines()))[0]
    assert row["status"] == "no_face" and "smaller than the minimum" in row["error"]


def test_video_timeout_needs_workers(face_video, tiny_model):
    r = run(face_video, "--model", tiny_model, "--workers", 0, "--video-timeout", 5)
    assert r.exit_code == 2 and "--video-timeout needs worker processes" in r.stderr


def test_the_library_names_options_neutrally_and_the_cli_says_them_as_flags(tmp_path):
    from screener.cli.exits import worded
    from screener.errors import StateError
    from screener.options import EngineOptions, OptionsError
    from screener.state.schema import unusable
    with pytest.raises(OptionsError) as info:
        EngineOptions(address="head:6379")
    assert (str(info.value), worded(info.value)) == ("address needs engine ray",
                                                     "--address needs --engine ray")
    e = unusable(tmp_path / "{0}.sqlite", "its schema 0 is too old")  # braces in a path stay
    assert isinstance(e, StateError) and "--" not in str(e)
    assert worded(e) == (f"the scan state {tmp_path}/{{0}}.sqlite cannot be used: its schema 0 "
                         f"is too old. Rerun with --rescan to set it aside (renamed to "
                         f"{tmp_path}/{{0}}.sqlite.unusable) and rescan every file, or pass "
                         "--state with another file")


def test_help_texts():
    """Every exit code on a line of its own, 141 included; extract's defaults are the code's."""
    from screener.options import MIN_FACE_PX, MIN_SCORE
    scan_help = CliRunner().invoke(main, ["scan", "--help"]).output
    for code, says in [(5, "another scan holds the state lock"),
                       (6, "the state file is unusable or read-only (--rescan, or another --state)"),
                       (130, "interrupted (the rows written so far are kept)"),
                       (141, "--out - and the reader of the report went away")]:
        assert re.search(rf"^ +{code} {re.escape(says)}$", scan_help, re.M), code
    extract_help = " ".join(CliRunner().invoke(main, ["extract", "--help"]).output.split())
    assert f"Lowest detector score kept (default: the scan's, {MIN_SCORE:g})." in extract_help
    assert f"Smallest face width kept (default: the scan's, {MIN_FACE_PX})." in extract_help


def test_counts_say_1_video_and_1_error(face_video, tiny_model, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    r = run(face_video, bad, "--model", tiny_model, "--frames", "12", "--workers", "0",
            "--no-state", "--out", tmp_path / "r.csv")
    assert "screener: 2 videos: 1 fake, 0 real, 0 no face, 1 error in " in r.stderr
    r = CliRunner().invoke(main, ["extract", str(face_video), "--frames", "1", "--workers", "0",
                                  "--out", str(tmp_path / "set")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "screener: 1 video: 1 crop from 1 video (unlabeled: 1), 0 already done, " \
           "0 without a face, 0 errors in " in r.stderr


# A bug put into a real `screener scan` process: what a user sees when screener itself fails.
INJECTED_BUG = """import sys
import screener.run
def bug(*args, **kw):
    raise ZeroDivisionError("injected bug")
screener.run.run_scan = bug
from screener.cli import main
main(sys.argv[1:], prog_name="screener")
"""


@pytest.mark.parametrize("how", ["plain", "log-file", "-vv"])
def test_an_unexpected_error_is_exit_70_one_line_and_says_where_its_traceback_went(
        face_video, tiny_model, tmp_path, how):
    """Exit 1 means --fail-on-fake: a bug has its own code (70), one line on the terminal, and
    its traceback in the --log-file or, with -vv, on the terminal."""
    log = tmp_path / "scan.log"
    extra = {"plain": [], "log-file": ["--log-file", str(log)], "-vv": ["-vv"]}[how]
    r = subprocess.run([sys.executable, "-c", INJECTED_BUG, "scan", str(face_video), "--model",
                        str(tiny_model), "--out", str(tmp_path / "r.csv"), "--fail-on-fake",
                        *extra], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 70, r.stderr[-3000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("screener: error:")]
    assert len(errors) == 1, r.stderr
    assert "unexpected error (a bug in screener; exit 70): ZeroDivisionError: injected bug" \
        in errors[0]
    if how == "plain":
        assert "Traceback" not in r.stderr and "rerun with -vv" in errors[0]
        assert r.stderr.strip().splitlines()[-1] == errors[0]
    elif how == "log-file":
        assert "Traceback" not in r.stderr and f"its traceback is in {log}" in errors[0]
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "in bug" in text
    else:
        assert "Traceback (most recent call last)" in r.stderr
        assert "its traceback is above" in errors[0]


def test_a_report_in_a_missing_folder_names_the_report(face_video, tiny_model, tmp_path):
    """Not the temporary file beside it (before: cannot write .../.r.csv.x8k2.tmp)."""
    out = tmp_path / "missing" / "r.csv"
    for extra in ([], ["--no-state"]):
        r = run(face_video, "--model", tiny_model, "--out", out, *extra)
        assert r.exit_code == 4, r.stderr
        assert r.stderr.strip().splitlines()[-1] == (
            f"screener: error: cannot write {out}: its folder does not exist")


@pytest.mark.parametrize("model,words", [("/dev/zero", "is not a model file: it is a device"),
                                         ("{tmp}/none.keras", "model file not found")])
def test_a_model_that_is_not_a_file_says_what_it_is(face_video, tmp_path, model, words):
    r = run(face_video, "--model", model.format(tmp=tmp_path), "--out", tmp_path / "r.csv")
    assert r.exit_code == 3 and words in r.stderr, r.stderr


@pytest.mark.slow
def test_a_file_named_in_a_folder_that_cannot_be_searched_is_one_error_row(
        face_video, tiny_model, tmp_path):
    """Like any file that cannot be read (before: the scan stopped, "no such file or folder")."""
    from helpers import without_root_powers
    locked = tmp_path / "locked"
    copy(face_video, locked / "v.mp4")
    other = copy(face_video, tmp_path / "w.mp4")
    locked.chmod(0o600)  # no search (x) permission: its files cannot be reached
    out = tmp_path / "r.csv"
    try:
        p = subprocess.run([*without_root_powers(), sys.executable, "-m", "screener", "scan",
                            str(locked / "v.mp4"), str(other), "--model", str(tiny_model),
                            "--frames", "1", "--out", str(out)],
                           capture_output=True, text=True, cwd=REPO, timeout=300)
    finally:
        locked.chmod(0o755)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_rows(out)
    assert [r["status"] for r in rows] == ["error", "ok"]
    assert "permission denied" in rows[0]["error"].lower(), rows[0]


def test_an_unexpected_error_in_screener_report_shows_its_traceback_with_vv(tmp_path):
    bug = INJECTED_BUG.replace("screener.run", "screener.html_report").replace(
        ".run_scan =", ".rebuild =")
    state = tmp_path / "s.sqlite"
    state.write_bytes(b"")
    for extra, where in (([], "rerun with -vv"), (["-vv"], "its traceback is above")):
        r = subprocess.run([sys.executable, "-c", bug, "report", "--state", str(state),
                            "--html", str(tmp_path / "p.html"), *extra],
                           capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert r.returncode == 70 and where in r.stderr, r.stderr[-3000:]
        assert ("Traceback (most recent call last)" in r.stderr) == bool(extra)
