"""screener.state: what an incremental run scans, reuses, defers and drops; the lock; a bad state
file. A fake engine stands in for the pipeline (no video is decoded here): the CLI tests in
test_incremental.py run the real thing."""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time

import pytest

from screener import state as st
from screener.errors import StateError, StateLocked
from screener.options import ReportOptions, StateOptions
from screener.run import run_scan
from screener.verdict import FaceScore, VideoResult

from helpers import unless_blocked_on

MODEL, OPTS = "abc@0.5", "SampleOptions(frames=8)"


class FakeEngine:
    """Scores a file by its first byte: results depend on content, and `calls` shows what ran."""

    def __init__(self, interrupt_after: int | None = None):
        self.calls: list[str] = []
        self.interrupt_after = interrupt_after

    def run(self, paths):
        for i, p in enumerate(paths):
            if self.interrupt_after is not None and i == self.interrupt_after:
                raise KeyboardInterrupt
            self.calls.append(p)
            with open(p, "rb") as f:
                score = f.read(1)[0] / 255
            yield VideoResult(path=p, status="ok", verdict="FAKE" if score >= .5 else "REAL",
                              fake_score=score, faces_scored=1, model="m", threshold=.5,
                              faces=[FaceScore(p, 0, 0, 0.0, 1, 2, 3, 4, .9, score)])


def make_files(folder, names, byte=b"\x10", size=100):
    folder.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3600  # settled long ago (ctime is now, hence settle_s=0 below)
    for n in names:
        p = folder / n
        p.write_bytes(byte * size)
        os.utime(p, (old, old))
    return [str(folder / n) for n in sorted(names)]


def incremental(paths, engine, folder, *, model_id=MODEL, options=OPTS, report="r.csv",
                fmt="csv", meta=None, frames_out=None, read_timeout_s=None, **state):
    """One incremental run through the scan's own loop, with `engine`; its RunSummary."""
    sink = st.StateSink(ReportOptions(out=str(folder / report), fmt=fmt, frames_out=frames_out),
                        StateOptions(path=str(folder / "s.sqlite"), **state),
                        model_id=model_id, options=options, meta=meta,
                        read_timeout_s=read_timeout_s)
    return run_scan(paths, engine, sink).incremental


def run(tmp_path, paths, engine=None, **kw):
    engine = engine or FakeEngine()
    kw.setdefault("settle_s", 0)
    return engine, incremental(paths, engine, tmp_path, **kw)


def plan(state, paths, **kw):
    """What the run would do, and what the state then remembers (files still changing)."""
    p = st.plan_files(paths, state.stored(), state.pending(), fresh=state.created,
                      model_id=MODEL, options=OPTS, **kw)
    state.keep_plan(p)
    return p


def report_paths(tmp_path):
    lines = (tmp_path / "r.csv").read_text().splitlines()[1:]
    return [ln.split(",")[0] for ln in lines]


def test_unchanged_rerun_scans_nothing_and_writes_the_same_bytes(tmp_path):
    paths = make_files(tmp_path / "in", ["b.mp4", "a.mp4", "c.mp4"])
    e, s = run(tmp_path, paths, frames_out=tmp_path / "f.csv")
    assert e.calls == paths and s.scanned == 3 and s.reused == 0
    first, frames = (tmp_path / "r.csv").read_bytes(), (tmp_path / "f.csv").read_bytes()
    e, s = run(tmp_path, paths, frames_out=tmp_path / "f.csv")
    assert e.calls == [] and s.scanned == 0 and s.reused == 3
    assert (tmp_path / "r.csv").read_bytes() == first
    assert (tmp_path / "f.csv").read_bytes() == frames  # faces are kept in the state too
    assert report_paths(tmp_path) == paths


def test_json_report_is_byte_identical_too(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4"])
    kw = dict(fmt="json", meta={"model": {"name": "m"}})
    run(tmp_path, paths, **kw)
    first = (tmp_path / "r.csv").read_bytes()
    run(tmp_path, paths, **kw)
    assert (tmp_path / "r.csv").read_bytes() == first
    doc = json.loads(first)
    assert doc["complete"] is True and doc["summary"]["videos"] == 1


def test_changed_files_are_rescanned_and_metadata_only_changes_are_not(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4", "c.mp4", "d.mp4"])
    run(tmp_path, paths)
    a, b, c, d = paths
    os.utime(a)                                   # touched: new mtime
    mt = os.stat(b).st_mtime_ns                   # replaced: same size and mtime, new content
    os.replace(make_files(tmp_path / "other", ["x.mp4"], byte=b"\xf0")[0], b)
    os.utime(b, ns=(mt, mt))
    os.chmod(c, 0o600)                            # metadata only: fingerprint says unchanged
    e, s = run(tmp_path, paths)
    assert e.calls == [a, b] and s.reused == 2
    e, _ = run(tmp_path, paths)
    assert e.calls == []
    row_b = (tmp_path / "r.csv").read_text().splitlines()[2]
    assert row_b.startswith(b + ",ok,FAKE")


def test_another_model_or_options_or_rescan_rescans_everything(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])
    run(tmp_path, paths)
    assert run(tmp_path, paths, model_id="def@0.5")[0].calls == paths
    assert run(tmp_path, paths, model_id="def@0.5")[0].calls == []
    assert run(tmp_path, paths, model_id="def@0.6")[0].calls == paths   # threshold
    assert run(tmp_path, paths, model_id="def@0.6", options="other")[0].calls == paths
    assert run(tmp_path, paths, model_id="def@0.6", options="other", rescan=True)[0].calls == paths


def test_disappeared_files_drop_out_or_are_kept_as_missing(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4", "c.mp4"])
    run(tmp_path, paths)
    os.unlink(paths[0])
    _, s = run(tmp_path, paths[1:], keep_missing=True)
    assert s.missing == 1 and s.report.missing == 1 and s.report.fake + s.report.real == 2
    rows = (tmp_path / "r.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:2] for r in rows] == [[paths[1], "ok"], [paths[2], "ok"],
                                                [paths[0], "missing"]]
    assert "no longer found" in rows[-1]
    _, s = run(tmp_path, paths[1:])
    assert s.dropped == 1 and report_paths(tmp_path) == paths[1:]
    _, s = run(tmp_path, paths[1:], keep_missing=True)  # forgotten for good
    assert s.missing == 0


def test_an_empty_input_empties_the_report(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4"])
    run(tmp_path, paths)
    _, s = run(tmp_path, [])
    assert s.dropped == 1 and report_paths(tmp_path) == []


def test_files_still_changing_are_deferred_until_they_settle(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4"])
    now = time.time()
    st.ScanState(tmp_path / "s.sqlite").close()  # an earlier run made the state
    with st.ScanState(tmp_path / "s.sqlite") as state:
        p = plan(state, paths, settle_s=30, now=now)
        assert p.deferred == paths and p.scan == []          # ctime is now
        p = plan(state, paths, settle_s=30, now=now + 31)
        assert p.scan == paths and p.deferred == []


def test_a_file_with_a_future_mtime_settles_by_our_clock(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4"])
    future = time.time() + 86400  # a writer whose clock is a day ahead
    os.utime(paths[0], (future, future))
    now = time.time()
    st.ScanState(tmp_path / "s.sqlite").close()
    with st.ScanState(tmp_path / "s.sqlite") as state:
        assert plan(state, paths, settle_s=5, now=now).deferred
        assert plan(state, paths, settle_s=5, now=now + 6).scan
        with open(paths[0], "ab") as f:  # it grew: its wait starts again
            f.write(b"x")
        os.utime(paths[0], (future, future + 1))
        assert plan(state, paths, settle_s=5, now=now + 7).deferred


def test_a_new_state_scans_everything_and_settling_is_for_changed_files(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])
    os.utime(paths[0])  # written just now
    e, s = run(tmp_path, paths, settle_s=30)  # a first run is a one-off scan: all of it
    assert e.calls == paths and s.deferred == 0
    e, s = run(tmp_path, paths, settle_s=30, model_id="new@0.5")  # same bytes, new model
    assert e.calls == paths and s.deferred == 0
    paths += make_files(tmp_path / "in", ["c.mp4"])
    os.utime(paths[2])
    e, s = run(tmp_path, paths, settle_s=30, model_id="new@0.5")
    assert e.calls == [] and s.deferred == 1 and report_paths(tmp_path) == paths[:2]


def test_a_deferred_file_keeps_its_last_row_until_rescanned(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4"])
    run(tmp_path, paths)
    with open(paths[0], "ab") as f:
        f.write(b"more")
    e, s = run(tmp_path, paths, settle_s=30)
    assert e.calls == [] and s.deferred == 1 and s.reused == 0
    assert report_paths(tmp_path) == paths


def test_a_file_changed_while_scanned_is_not_recorded(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])

    class Appending(FakeEngine):
        def run(self, ps):
            for r in super().run(ps):
                if r.path == paths[0]:
                    with open(r.path, "ab") as f:
                        f.write(b"late bytes")
                yield r

    _, s = run(tmp_path, paths, engine=Appending())
    assert s.unrecorded == 1 and s.scanned == 1
    assert report_paths(tmp_path) == [paths[1]]
    assert run(tmp_path, paths)[0].calls == [paths[0]]


def test_interrupt_keeps_what_was_done(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4", "c.mp4"])
    _, s = run(tmp_path, paths, engine=FakeEngine(interrupt_after=2), fmt="json")
    assert s.interrupted and s.scanned == 2
    doc = json.loads((tmp_path / "r.csv").read_text())
    assert doc["complete"] is False and len(doc["videos"]) == 2
    assert run(tmp_path, paths)[0].calls == [paths[2]]


def test_second_holder_is_refused_and_the_lock_is_released(tmp_path):
    with st.ScanState(tmp_path / "s.sqlite"):
        with pytest.raises(StateLocked, match=f"pid {os.getpid()}"):
            st.ScanState(tmp_path / "s.sqlite")
    st.ScanState(tmp_path / "s.sqlite").close()
    # The lock is flock on a side file, so anyone (a test, a wrapper script) can hold it.
    with open(st.lock_path(tmp_path / "s.sqlite"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StateLocked):
            run(tmp_path, [])


@pytest.mark.parametrize("content", [b"garbage " * 100, b"SQLite format 3\x00" + b"\x00" * 50])
def test_corrupt_state_is_an_error_with_a_way_out(tmp_path, content):
    paths = make_files(tmp_path / "in", ["a.mp4"])
    run(tmp_path, paths)
    before = (tmp_path / "r.csv").read_bytes()
    for side in ("-wal", "-shm"):
        if os.path.exists(f"{tmp_path}/s.sqlite{side}"):
            os.unlink(f"{tmp_path}/s.sqlite{side}")
    (tmp_path / "s.sqlite").write_bytes(content)
    with pytest.raises(StateError) as info:
        run(tmp_path, paths)
    assert "the rescan option" in str(info.value) and "the state option" in str(info.value)
    assert (tmp_path / "r.csv").read_bytes() == before  # never a silent empty report
    e, s = run(tmp_path, paths, rescan=True)
    assert e.calls == paths and (tmp_path / "s.sqlite.unusable").read_bytes() == content
    assert (tmp_path / "r.csv").read_bytes() == before


def test_foreign_or_newer_database_is_refused(tmp_path):
    db = tmp_path / "s.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(StateError, match="not a screener scan state"):
        st.ScanState(db)
    db.unlink()
    st.ScanState(db).close()
    with sqlite3.connect(db) as c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StateError, match="newer screener"):
        st.ScanState(db)


@pytest.mark.parametrize("how", ["symlink", "hard link"])
def test_a_lock_file_that_is_a_link_is_refused_and_what_it_names_is_untouched(tmp_path, how):
    """Another user (or a mistake) makes the lock a link to a file of ours: it is never
    opened through the link (before: the file was truncated)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    db = tmp_path / "r.csv.state.sqlite"
    (os.symlink if how == "symlink" else os.link)(notes, st.lock_path(db))
    with pytest.raises(StateError, match="symbolic link" if how == "symlink" else "hard link"):
        st.ScanState(db)
    assert notes.read_text() == "my notes\n" and not db.exists()


@pytest.mark.parametrize("side", ["", "-wal", "-shm"])
def test_a_state_or_side_file_that_is_a_symlink_is_refused(tmp_path, side):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    db = tmp_path / "r.csv.state.sqlite"
    os.symlink(notes, f"{db}{side}")
    with pytest.raises(StateError, match="symbolic link"):
        st.ScanState(db)
    assert notes.read_text() == "my notes\n"


@pytest.mark.parametrize("kind", ["null device", "named pipe"])
@pytest.mark.parametrize("rescan", [False, True], ids=["plain", "rescan"])
def test_a_state_that_is_a_device_or_a_pipe_is_refused_untouched(tmp_path, kind, rescan):
    """`--state /dev/null` (or a pipe): refused before a lock or a journal is made beside it,
    never opened by SQLite, and with --rescan never renamed aside with a regular file put in
    its place (before: the device became `<state>.unusable` and a database took its name).
    A device of our own here, as root: the system's /dev/null is not put at risk."""
    import stat
    node = tmp_path / "null"
    if kind == "named pipe":
        os.mkfifo(node)
    else:
        try:
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except OSError:
            pytest.skip("cannot make a device here")
    before = os.stat(node)
    with pytest.raises(StateError, match="not a regular file"):
        st.ScanState(node, reset_unusable=rescan)
    after = os.stat(node)
    assert (after.st_ino, after.st_mode, after.st_ctime_ns) == \
        (before.st_ino, before.st_mode, before.st_ctime_ns)
    assert sorted(os.listdir(tmp_path)) == ["null"]


class DeletingEngine(FakeEngine):
    """Deletes `victim` while "reading" it: an error row (opened too late) or a row."""

    def __init__(self, victim: str, read_first: bool):
        super().__init__()
        self.victim, self.read_first = victim, read_first

    def run(self, paths):
        yield from super().run([p for p in paths if p != self.victim])
        os.unlink(self.victim)
        yield (VideoResult(path=self.victim, status="ok", verdict="REAL", fake_score=.1)
               if self.read_first else
               VideoResult(path=self.victim, status="error", error="no such file"))


@pytest.mark.parametrize("read_first", [False, True], ids=["error-row", "read"])
def test_a_file_deleted_while_scanned_drops_out_with_at_most_one_warning(tmp_path, caplog,
                                                                        read_first):
    """Its error row's warning is the one line about it (the engine's); read before it went,
    one line says so. Never "it will be rescanned": it is gone (before: two warnings)."""
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])
    _, s = run(tmp_path, paths, DeletingEngine(paths[1], read_first))
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert not any("rescanned" in m for m in said), said
    assert said == ([f"{paths[1]} was deleted while it was scanned; it is left out of the "
                     "report"] if read_first else [])
    assert report_paths(tmp_path) == paths[:1] and s.unrecorded == 1


def test_state_uses_wal_and_one_row_per_file(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])
    run(tmp_path, paths)
    run(tmp_path, paths, rescan=True)
    with sqlite3.connect(tmp_path / "s.sqlite") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("SELECT count(*) FROM files").fetchone()[0] == 2


def test_result_json_round_trip_with_a_name_that_is_not_utf8():
    path = os.fsdecode(b"/x/caf\xe9.mp4")
    r = VideoResult(path=path, status="ok", verdict="REAL", fake_score=0.123456789,
                    faces=[FaceScore(path, 1, 0, 0.04, 1.5, 2, 3, 4, .9, .1)])
    back = st.result_from_json(st.result_to_json(r))
    assert back == r and back.faces == r.faces
    moved = st.result_from_json(st.result_to_json(r), "rel/caf.mp4")
    assert moved.path == "rel/caf.mp4" and moved.faces[0].path == "rel/caf.mp4"


def test_temporaries_of_a_run_killed_while_writing_the_report_are_removed(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4"])
    stale = tmp_path / ".r.csv.k2j4h1.tmp"  # what atomic_write leaves when killed
    stale.write_text("half a report")
    other = tmp_path / ".other.csv.abc.tmp"
    other.write_text("not ours")
    run(tmp_path, paths)
    assert not stale.exists() and other.exists()


def test_a_read_that_never_returns_while_planning_is_bounded_by_the_time_limit(
        tmp_path, monkeypatch, caplog):
    """Planning reads new files (their fingerprint) while holding the lock: a hung network
    mount there wedged every later run. With a time limit (--video-timeout) the read is given
    up; the file is scanned, where the engine's own limit applies. The hung read is made
    here: a real one needs a dead NFS server."""
    import threading
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])
    never = threading.Event()
    from screener import sources as planning
    real = planning._fingerprint

    def hung(path, size):
        if path.endswith("b.mp4"):
            never.wait()
        return real(path, size)
    monkeypatch.setattr(planning, "_fingerprint", hung)
    try:
        engine, s = run(tmp_path, paths, read_timeout_s=0.5)
    finally:
        never.set()
    assert s.scanned == 2 and engine.calls == paths
    assert "b.mp4: reading it took longer than the 0.5 s limit" in caplog.text


def test_a_pipe_among_the_inputs_is_never_opened_while_planning(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4"])
    os.mkfifo(tmp_path / "in" / "p.mp4")  # opened for reading, it would wait for a writer
    seen = []

    class Engine(FakeEngine):
        def run(self, paths):
            for p in paths:
                if p.endswith("p.mp4"):
                    seen.append(p)
                    yield VideoResult(path=p, status="error", error="not a regular file")
                else:
                    yield from super().run([p])
    plan_paths = sorted([*paths, str(tmp_path / "in" / "p.mp4")])
    with unless_blocked_on(tmp_path / "in" / "p.mp4") as pipe:
        engine, s = run(tmp_path, plan_paths, engine=Engine())
        assert seen == [str(tmp_path / "in" / "p.mp4")] and s.scanned == 2
        engine, s = run(tmp_path, plan_paths, engine=Engine())  # never recorded: asked again
        assert s.scanned == 1 and s.reused == 1
    assert not pipe.opened


KILLED_CHILD = r"""
import sys, time
from screener import state as st
from screener.options import ReportOptions, StateOptions
from screener.run import run_scan
from screener.verdict import VideoResult

class Slow:
    def run(self, paths):
        for p in paths:
            time.sleep(0.01)
            yield VideoResult(path=p, status="ok", verdict="REAL", fake_score=0.25)

folder = sys.argv[1]
run_scan(sys.argv[2:], Slow(), st.StateSink(
    ReportOptions(out=folder + "/r.json"), StateOptions(path=folder + "/s.sqlite", settle_s=0),
    model_id=%r, options=%r))
""" % (MODEL, OPTS)


@pytest.mark.slow
def test_sigkill_at_any_moment_never_loses_duplicates_or_damages(tmp_path):
    """Kill a run at random moments (planning, recording, writing the report), again and
    again: the state always opens, the report is always whole, and the end result is exact."""
    import random
    import signal
    import subprocess
    import sys

    paths = make_files(tmp_path / "in", [f"v{i:02d}.mp4" for i in range(40)])
    rng = random.Random(6)
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(tmp_path), *paths])
        time.sleep(rng.uniform(0.2, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with st.ScanState(tmp_path / "s.sqlite") as state:  # opens: not damaged
            assert state.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if (tmp_path / "r.json").exists():  # a report is there whole, or not at all
            assert json.loads((tmp_path / "r.json").read_text())["complete"] is True
    engine, s = run(tmp_path, paths, fmt="json")
    assert s.reused > 0 and s.scanned + s.reused == 40  # the killed runs' rows are kept
    assert [v["path"] for v in json.loads((tmp_path / "r.json").read_text())["videos"]] == paths
    with sqlite3.connect(tmp_path / "s.sqlite") as c:
        assert c.execute("SELECT count(*) FROM files").fetchone()[0] == 40


def test_planning_writes_nothing_and_the_run_keeps_what_it_asks(tmp_path):
    """plan_files only decides; the state learns the plan's bookkeeping (new metadata of an
    unchanged file, files still changing) when the run keeps the plan."""
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])
    run(tmp_path, paths)
    os.chmod(paths[0], 0o600)       # metadata only: ctime moves, the content stays
    paths += make_files(tmp_path / "in", ["c.mp4"])
    os.utime(paths[2])              # new and still changing
    db = tmp_path / "s.sqlite"

    def rows():
        with sqlite3.connect(db) as c:
            return (c.execute("SELECT key, ctime_ns FROM files ORDER BY key").fetchall(),
                    c.execute("SELECT key FROM pending").fetchall())
    with st.ScanState(db) as state:
        before = rows()
        p = st.plan_files(paths, state.stored(), state.pending(), model_id=MODEL, options=OPTS,
                          settle_s=30)
        assert rows() == before     # nothing written
        assert [k for k, _ in p.restat] == [st.path_key(paths[0])] and len(p.pending) == 1
        assert p.reuse.keys() == {paths[0], paths[1]} and p.deferred == [paths[2]]
        state.keep_plan(p)
        files, pending = rows()
        assert pending == [(st.path_key(paths[2]),)]
        assert dict(files)[st.path_key(paths[0])] == os.stat(paths[0]).st_ctime_ns


def test_a_file_is_read_once_while_planning(tmp_path, monkeypatch):
    """A file whose metadata changed and that is scanned again (another model here) has its
    fingerprint read once, not once to compare and once more to record."""
    from screener import sources as planning
    paths = make_files(tmp_path / "in", ["a.mp4"])
    run(tmp_path, paths)
    os.chmod(paths[0], 0o600)
    reads = []
    real = planning._fingerprint
    monkeypatch.setattr(planning, "_fingerprint", lambda p, n: reads.append(p) or real(p, n))
    engine, s = run(tmp_path, paths, model_id="other@0.5")
    assert engine.calls == paths and reads == paths


# --- a state whose SQLite is sound but whose content is damaged -------------------------------

def _damage(db, sql: str, *args) -> None:
    with sqlite3.connect(db) as c:
        c.execute(sql, args)


@pytest.mark.parametrize("result", ["not json", '{"row": {}}', '{"faces": []}', "[1, 2]",
                                    '{"row": {"path": "a", "status": "ok", "fake_score": "abc"}}',
                                    '{"row": {"path": "a", "status": "odd"}}'],
                         ids=["not-json", "no-fields", "no-row", "a-list", "a-text-score",
                              "a-strange-status"])
def test_a_damaged_row_costs_a_rescan_of_its_file_not_the_run(tmp_path, result):
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4", "c.mp4"])
    run(tmp_path, paths)
    before = (tmp_path / "r.csv").read_bytes()
    _damage(tmp_path / "s.sqlite", "UPDATE files SET result = ? WHERE key = ?", result,
            os.fsencode(paths[1]))
    e, s = run(tmp_path, paths)
    assert e.calls == [paths[1]] and (s.scanned, s.reused) == (1, 2)
    assert (tmp_path / "r.csv").read_bytes() == before
    e, s = run(tmp_path, paths)  # the row was replaced
    assert e.calls == [] and s.reused == 3


def test_a_damaged_row_of_a_file_gone_is_forgotten(tmp_path):
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])
    run(tmp_path, paths)
    _damage(tmp_path / "s.sqlite", "UPDATE files SET result = 'x' WHERE key = ?",
            os.fsencode(paths[1]))
    e, s = run(tmp_path, paths[:1], keep_missing=True)
    assert e.calls == [] and s.missing == 0 and report_paths(tmp_path) == paths[:1]
    with sqlite3.connect(tmp_path / "s.sqlite") as c:
        assert c.execute("SELECT count(*) FROM files").fetchone()[0] == 1


@pytest.mark.parametrize("sql,words", [
    ("UPDATE meta SET value = 'x' WHERE key = 'schema_version'", "schema version 'x' is not a"),
    ("DELETE FROM meta WHERE key = 'schema_version'", "schema 0 is too old"),
    ("DROP TABLE pending", "table pending is missing"),
    ("DROP TABLE files", "table files is missing"),
    ("ALTER TABLE files DROP COLUMN fingerprint", "table files lacks fingerprint"),
], ids=["version-not-a-number", "no-version", "no-pending", "no-files", "no-column"])
def test_a_state_of_another_shape_is_unusable_before_anything_is_read_and_rescan_recovers(
        tmp_path, sql, words):
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])
    run(tmp_path, paths)
    before = (tmp_path / "r.csv").read_bytes()
    _damage(tmp_path / "s.sqlite", sql)
    engine = FakeEngine()
    with pytest.raises(StateError, match=words) as info:
        run(tmp_path, paths, engine)
    assert "the rescan option" in str(info.value) and engine.calls == []
    assert (tmp_path / "r.csv").read_bytes() == before
    e, s = run(tmp_path, paths, rescan=True)
    assert e.calls == paths and (tmp_path / "s.sqlite.unusable").is_file()
    assert (tmp_path / "r.csv").read_bytes() == before


def test_screener_report_on_a_damaged_state_is_exit_6_and_leaves_out_damaged_rows(tmp_path):
    from helpers import screener_cli
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])
    run(tmp_path, paths)
    db = tmp_path / "s.sqlite"
    _damage(db, "UPDATE files SET result = 'x' WHERE key = ?", os.fsencode(paths[0]))
    saved = st.read_saved(db)
    assert [r.path for _, r in saved.results] == paths[1:]
    _damage(db, "DROP TABLE pending")
    r = screener_cli("report", "--html", tmp_path / "p.html", "--state", db, check=False)
    assert r.returncode == 6 and "table pending is missing" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "p.html").exists()


@pytest.mark.parametrize("rescan", [False, True])
def test_another_applications_database_is_refused_untouched(tmp_path, rescan):
    """Refused before anything is written: no lock file beside it, no WAL mode, not renamed
    by --rescan; its bytes stay what they were."""
    db = tmp_path / "foreign.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE customers (name TEXT)")
        c.execute("INSERT INTO customers VALUES ('ada')")
    c.close()
    before = db.read_bytes()
    with pytest.raises(StateError, match="not a screener scan state") as info:
        st.ScanState(db, reset_unusable=rescan)
    assert "rescan" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["foreign.db"]
    assert db.read_bytes() == before


@pytest.mark.parametrize("damage", ["not sqlite", "newer schema", "no table"])
def test_screener_report_exits_6_on_any_unusable_state_as_scan_does(tmp_path, damage):
    """One exit code per error type for every command (README "Exit codes"): a state that
    cannot be used is 6 for `report` too, never 4 (an output not written) or 2."""
    from helpers import screener_cli
    paths = make_files(tmp_path / "in", ["a.mp4"])
    run(tmp_path, paths)
    db = tmp_path / "s.sqlite"
    if damage == "not sqlite":
        db.write_bytes(b"\x00not a database" * 100)
    elif damage == "newer schema":
        _damage(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    else:
        _damage(db, "DROP TABLE files")
    r = screener_cli("report", "--html", tmp_path / "p.html", "--state", db, check=False)
    assert r.returncode == 6 and "cannot be used" in r.stderr, r.stderr
    assert not (tmp_path / "p.html").exists()


def test_a_schema_1_state_is_migrated_and_its_rows_reused(tmp_path):
    """Schema 1 kept the sampling options as their repr; schema 2 keeps SampleOptions.key():
    a state from before is brought up to date, and its rows still count as unchanged for
    largest-face mode, then the only one (people, the default, rescans them)."""
    from screener.options import SampleOptions
    from screener.state import schema
    sample = SampleOptions(frames=8, largest_face=True)
    key = json.dumps(sample.key(), sort_keys=True)
    paths = make_files(tmp_path / "in", ["a.mp4", "b.mp4"])
    run(tmp_path, paths, options=key)
    db = tmp_path / "s.sqlite"
    _damage(db, "UPDATE files SET options = ?", "SampleOptions(frames=8, every_s=None, "
            "all_faces=False, min_face=64, min_score=0.6, research_every=8)")
    _damage(db, "UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    _damage(db, "DROP TABLE media")
    engine, s = run(tmp_path, paths, options=key)
    assert engine.calls == [] and s.reused == 2
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(schema.SCHEMA_VERSION),)
        assert {o for (o,) in c.execute("SELECT options FROM files")} == {key}
    c.close()
    people = json.dumps(SampleOptions(frames=8).key(), sort_keys=True)
    engine, s = run(tmp_path, paths, options=people)
    assert len(engine.calls) == 2 and s.reused == 0
