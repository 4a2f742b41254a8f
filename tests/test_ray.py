"""The Ray engine on a real two-node local Ray cluster (started once for the module): the same
report as the local engine, every row once when workers die, incremental reruns, Ctrl-C."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import (FORGED_NAME, FORGED_SHOWN, bad_inputs, copy, cut_short,
                      unless_blocked_on)

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install .[ray])")

KILL_MARK = "__dies__"   # screener.engines.ray's test hook kills the worker on these paths
HANG_MARK = "__hangs__"  # ... and makes it hang (a stuck decoder) on these


@pytest.fixture(scope="module")
def cluster(request):
    """Two nodes of one CPU each, as separate raylets: tasks really run on both. The local S3
    server (conftest `s3`) starts first where it can: the nodes' workers read its AWS_*
    variables."""
    try:
        request.getfixturevalue("s3")
    except pytest.skip.Exception:
        pass
    from ray.cluster_utils import Cluster
    old = os.environ.get("SCREENER_TEST_KILL_WORKER_ON")
    os.environ["SCREENER_TEST_KILL_WORKER_ON"] = KILL_MARK  # workers inherit it
    os.environ["SCREENER_TEST_HANG_WORKER_ON"] = HANG_MARK
    c = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=1, include_dashboard=False, object_store_memory=200 * 2**20))
    c.add_node(num_cpus=1, object_store_memory=200 * 2**20)
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()
    os.environ.pop("SCREENER_TEST_HANG_WORKER_ON", None)
    if old is None:
        os.environ.pop("SCREENER_TEST_KILL_WORKER_ON", None)
    else:
        os.environ["SCREENER_TEST_KILL_WORKER_ON"] = old


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """An untrained Meso-4 with random weights: every crop gets its own score, so a score
    that landed on the wrong video, or a batch-dependent one, shows."""
    import keras
    from screener import nets
    keras.utils.set_random_seed(7)
    folder = tmp_path_factory.mktemp("random_model")
    path = folder / "random.keras"
    nets.build("meso4").save(path)
    path.with_suffix(".json").write_text(json.dumps({"name": "random", "threshold": 0.5}))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory, face_video, two_face_video, no_face_video):
    d = tmp_path_factory.mktemp("ray_scan")
    copy(face_video, d / "a_face.mp4")
    copy(no_face_video, d / "b_none.mp4")
    copy(two_face_video, d / "c_two.mp4")
    copy(face_video, d / "d_face.mp4")
    bad_inputs(d / "bad", face_video)
    return d


def report_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    assert [r["path"] for r in a] == [r["path"] for r in b]
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if k.startswith("fake_score") or k == "fake_share":
                assert (x[k] == "") == (y[k] == ""), (x["path"], k)
                if x[k]:
                    assert abs(float(x[k]) - float(y[k])) <= 1e-4, (x["path"], k, x[k], y[k])
            else:
                assert x[k] == y[k], (x["path"], k)


def test_same_report_as_the_local_engine(cluster, folder, random_model, tmp_path):
    from screener.api import scan_incremental
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = tmp_path / f"{engine}.csv"
        s = scan_incremental([folder], out=outs[engine], model=random_model, frames=4,
                             batch_size=8, engine=engine, settle_s=0,
                             frames_out=tmp_path / f"{engine}_faces.csv")
        assert s.scanned == 9
    local, distributed = report_rows(outs["local"]), report_rows(outs["ray"])
    assert_same_rows(local, distributed)
    assert [r["status"] for r in distributed].count("error") == 5
    assert {r["status"] for r in distributed} == {"ok", "no_face", "error"}
    faces_local = report_rows(tmp_path / "local_faces.csv")
    faces_ray = report_rows(tmp_path / "ray_faces.csv")
    assert len(faces_local) == len(faces_ray) > 0
    for x, y in zip(faces_local, faces_ray):
        assert (x["path"], x["frame_index"], x["face_index"], x["person"]) == \
               (y["path"], y["frame_index"], y["face_index"], y["person"])
        assert abs(float(x["p_fake"]) - float(y["p_fake"])) <= 1e-4


def test_tasks_run_on_both_nodes_and_work_stays_bounded(cluster, folder, scorer):
    from screener.engines.ray import RayEngine
    from screener.options import EngineOptions, SampleOptions
    paths = [str(folder / n) for n in ("a_face.mp4", "c_two.mp4", "d_face.mp4")] * 4
    with RayEngine(scorer, SampleOptions(frames=4),
                   EngineOptions("ray", batch_size=4), window=2) as engine:
        results = list(engine.run(paths))
    assert [r.path for r in results] == paths
    assert all(r.status == "ok" for r in results)
    st = engine.stats
    assert len(st.nodes) == 2 and sum(st.nodes.values()) == len(paths)
    assert st.peak_videos_in_flight <= 2
    # window videos of at most 8 crops + under one batch pending + 2 batches (of at most
    # batch + one video) in the one actor
    assert st.peak_crops_held <= 2 * 8 + (4 + 8) * 3
    assert ray.is_initialized()  # a Ray it did not start is left running


def busy_workers() -> list[int]:
    """Ray worker processes running a video task right now (Ray names them after it)."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().startswith(b"ray::video_crops"):
                        pids.append(int(pid))
            except OSError:
                pass
    return pids


def test_tasks_read_objects_from_the_store(cluster, s3, folder, scorer):
    """Objects are read by the tasks, on their nodes, straight from the store: the driver
    copies none, and each is read once; the rows are those of the same files on disk."""
    from screener import remote
    from screener.discover import find_videos
    from screener.engines.ray import RayEngine
    from screener.options import EngineOptions, SampleOptions
    names = ["a_face.mp4", "b_none.mp4", "c_two.mp4", "d_face.mp4"]
    s3.bucket("ray")
    for name in names:
        s3.upload("ray", f"v/{name}", folder / name)
    urls = find_videos(["s3://ray/v/"])
    copies, gets = remote.DOWNLOADS, s3.gets("ray")

    def scan(paths):
        with RayEngine(scorer, SampleOptions(frames=4), EngineOptions("ray", batch_size=4)
                       ) as engine:
            return list(engine.run(paths)), engine.stats
    from_store, stats = scan(urls)
    assert remote.DOWNLOADS == copies and s3.gets("ray") == gets + len(urls)
    assert sum(stats.nodes.values()) == len(urls)
    from_disk, _ = scan([str(folder / n) for n in names])
    assert [r.path for r in from_store] == [f"s3://ray/v/{n}" for n in names] == urls
    assert [(r.status, r.fake_score, r.faces_scored) for r in from_store] == \
        [(r.status, r.fake_score, r.faces_scored) for r in from_disk]
    assert [r.status for r in from_store] == ["ok", "no_face", "ok", "ok"]


def test_a_worker_killed_mid_scan_still_gives_every_row_once(cluster, folder, tmp_path,
                                                              scorer):
    """SIGKILL a worker while it decodes (another process, at a random moment): its video is
    retried elsewhere; and a video that kills its worker on every try becomes an error row."""
    from screener.api import scan_incremental
    d = tmp_path / "kill"
    for i in range(6):
        copy(folder / "a_face.mp4", d / f"v{i}.mp4")
    copy(folder / "b_none.mp4", d / f"v9{KILL_MARK}.mp4")
    killed = []
    stop = threading.Event()

    def killer():
        while not stop.is_set() and len(killed) < 2:
            for pid in busy_workers():
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
                break
            time.sleep(0.005)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        s = scan_incremental([d], out=tmp_path / "kill.csv", scorer=scorer, frames=8,
                             engine="ray", settle_s=0)
    finally:
        stop.set()
        t.join()
    rows = report_rows(tmp_path / "kill.csv")
    assert [r["path"] for r in rows] == sorted(str(p) for p in d.iterdir())
    assert s.scanned == 7
    assert killed, "no worker was caught mid-task"
    *good, dead = rows
    assert all(r["status"] == "ok" for r in good)
    assert dead["status"] == "error" and "worker process died" in dead["error"]


def test_second_run_is_incremental(cluster, folder, tmp_path, scorer):
    from screener.api import scan_incremental
    out = tmp_path / "inc.csv"
    first = scan_incremental([folder], out=out, scorer=scorer, frames=4, engine="ray",
                             settle_s=0)
    report = out.read_bytes()
    again = scan_incremental([folder], out=out, scorer=scorer, frames=4, engine="ray",
                             settle_s=0)
    assert (first.scanned, again.scanned, again.reused) == (9, 0, 9)
    assert out.read_bytes() == report


def test_ctrl_c_leaves_state_and_report_consistent(cluster, folder, tmp_path, scorer):
    from screener.api import scan_incremental
    from screener.state import ScanInterrupted
    out = tmp_path / "int.csv"
    seen = []

    def interrupt_after_two(r):
        seen.append(r.path)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(ScanInterrupted) as e:
        scan_incremental([folder], out=out, scorer=scorer, frames=4, engine="ray",
                         settle_s=0, on_result=interrupt_after_two)
    assert e.value.summary.scanned == 2
    assert [r["path"] for r in report_rows(out)] == seen
    rest = scan_incremental([folder], out=out, scorer=scorer, frames=4, engine="ray",
                            settle_s=0)
    assert (rest.scanned, rest.reused) == (7, 2)
    assert len(report_rows(out)) == 9


def test_a_video_over_the_time_limit_costs_one_row(cluster, folder, tmp_path, scorer):
    """A task stuck on one video (its decoder never returns) is cancelled after the limit: an
    error row, no retry, every other row as without a limit."""
    from screener.engines.ray import RayEngine
    from screener.options import EngineOptions, SampleOptions
    hung = copy(folder / "a_face.mp4", tmp_path / f"v{HANG_MARK}.mp4")
    paths = [str(folder / "a_face.mp4"), str(hung), str(folder / "c_two.mp4"),
             str(folder / "b_none.mp4")]
    opts = SampleOptions(frames=4)
    with RayEngine(scorer, opts, EngineOptions("ray", batch_size=8)) as engine:
        normal = list(engine.run([p for p in paths if p != str(hung)]))
    t = time.monotonic()
    with RayEngine(scorer, opts, EngineOptions("ray", batch_size=8, video_timeout_s=3)) as engine:
        limited = list(engine.run(paths))
    assert time.monotonic() - t < 600  # not the hour the stuck task would take
    assert engine.stats.timed_out == 1 and engine.stats.retries == 0
    assert [r.path for r in limited] == paths
    assert limited[1].status == "error" and "longer than the 3 s limit" in limited[1].error
    others = limited[:1] + limited[2:]
    assert [(r.path, r.status, r.faces_scored, r.fake_score) for r in others] == \
           [(r.path, r.status, r.faces_scored, r.fake_score) for r in normal]
    # The cluster goes on: the cancelled task's worker was replaced.
    with RayEngine(scorer, opts, EngineOptions("ray", batch_size=8)) as engine:
        assert [r.status for r in engine.run(paths[:1])] == ["ok"]


def test_a_video_computed_again_after_its_crops_were_lost_keeps_the_time_limit(
        cluster, folder, tmp_path, scorer):
    """When a scoring batch's crops are lost (their node died), its videos are computed again
    one by one (RayEngine._redo); a video whose decoder now hangs still ends as an error row
    once over the limit, instead of holding the scan for ever."""
    import numpy as np
    from screener.engines.ray import RayEngine, _Video
    from screener.options import EngineOptions, SampleOptions
    from screener.pipeline import FaceCrop, VideoCrops
    hung = str(copy(folder / "a_face.mp4", tmp_path / f"again{HANG_MARK}.mp4"))
    with RayEngine(scorer, SampleOptions(frames=4),
                   EngineOptions("ray", batch_size=8, video_timeout_s=3)) as engine:
        engine._connect()
        class Owner:  # defined here so that Ray ships it by value (workers lack tests/)
            def put(self, x):
                return [ray.put(x)]  # in a list: the caller gets a reference owned here

        owner = ray.remote(num_cpus=0)(Owner).remote()
        lost = ray.get(owner.put.remote(np.zeros((2, 256, 256, 3), np.uint8)))[0]
        ray.kill(owner)  # the crops die with their owner, as with a lost node
        # The kill is asynchronous: wait until the owner is gone before reading the crops, or
        # a read that wins the race copies them to this node, where they then outlive it.
        for _ in range(120):
            try:
                ray.get(owner.put.remote(0), timeout=30)
            except ray.exceptions.RayActorError:
                break
            time.sleep(0.5)
        with pytest.raises(ray.exceptions.ObjectLostError):
            for _ in range(120):  # the kill is asynchronous, and so is the news of it
                ray.get(lost, timeout=10)
                time.sleep(0.5)
        face = FaceCrop(0, 0.0, (0, 0, 1, 1), np.zeros((6, 2)), 1.0, None)
        first_try = VideoCrops(hung, frames_sampled=4, frames_with_face=2, crops=[face, face])
        t = time.monotonic()
        rows = list(engine._redo([_Video(hung, video=first_try, crops_ref=lost)]))
    assert time.monotonic() - t < 300  # not the hour the stuck task would take
    assert [(r.status, r.path) for r in rows] == [("error", hung)]
    assert "longer than the 3 s limit" in rows[0].error
    assert engine.stats.timed_out == 1 and engine.stats.retries == 1


def test_a_restarted_clock_does_not_lift_the_time_limit(cluster, folder, tmp_path, scorer):
    """The Clock actor dies (as with its node) while a video hangs: Ray restarts it empty, and
    the hung video still ends as an error row once over the limit."""
    import threading
    from screener.engines.ray import RayEngine
    from screener.options import EngineOptions, SampleOptions
    hung = str(copy(folder / "a_face.mp4", tmp_path / f"clock{HANG_MARK}.mp4"))
    rows, failed = [], []
    with RayEngine(scorer, SampleOptions(frames=4),
                   EngineOptions("ray", batch_size=8, video_timeout_s=8)) as engine:
        def scan():
            try:
                rows.extend(engine.run([hung]))
            except BaseException as e:  # seen by the assertions below
                failed.append(e)
        worker = threading.Thread(target=scan, daemon=True)
        worker.start()
        first = None
        for _ in range(600):  # until the clock has heard the hung task start
            clock = engine._clock
            if clock is not None:
                first, known = ray.get(clock.elapsed.remote([1], False))
                if known:
                    break
            time.sleep(0.1)
        assert first is not None and known
        time.sleep(2)  # the driver has asked the clock at least once
        ray.kill(clock, no_restart=False)
        worker.join(300)  # not the hour the stuck task would take
        assert not worker.is_alive() and not failed
        assert ray.get(clock.elapsed.remote([1], False))[0] != first  # it was restarted
    assert [(r.status, r.path) for r in rows] == [("error", hung)]
    assert "longer than the 8 s limit" in rows[0].error
    assert engine.stats.timed_out == 1


def test_a_node_lost_mid_scan_still_gives_every_row_once(cluster, folder, tmp_path, scorer):
    """Last of the cluster tests: it takes the second node away for good."""
    from screener.engines.ray import RayEngine
    from screener.options import EngineOptions, SampleOptions
    paths = [str(folder / n) for n in ("a_face.mp4", "b_none.mp4", "c_two.mp4")] * 4
    results = []
    with RayEngine(scorer, SampleOptions(frames=8), EngineOptions("ray", batch_size=8)) as engine:
        for r in engine.run(paths):
            results.append(r)
            if len(results) == 2:
                cluster.remove_node(cluster.list_all_nodes()[-1], allow_graceful=False)
    assert [r.path for r in results] == paths
    assert [r.status for r in results] == ["ok", "no_face", "ok"] * 4


def test_a_named_pipe_is_an_error_row_never_opened(cluster, tmp_path, face_video, scorer):
    """With and without a state: planning (in the driver) and the task (on the cluster) both
    leave it unopened; opened, either would wait for a writer for ever."""
    from screener.api import scan, scan_incremental
    d = tmp_path / "drop"
    copy(face_video, d / "a.mp4")
    os.mkfifo(d / "pipe.mp4")
    with unless_blocked_on(d / "pipe.mp4") as pipe:
        plain = scan([d], scorer=scorer, frames=2, engine="ray")
        s = scan_incremental([d], out=tmp_path / "r.csv", scorer=scorer, frames=2,
                             engine="ray", settle_s=0)
    assert not pipe.opened
    for rows in ([(r.status, r.error or "") for r in plain],
                 [(r["status"], r["error"]) for r in report_rows(tmp_path / "r.csv")]):
        assert rows == [("ok", ""), ("error", "not a regular file (a named pipe)")]
    assert s.scanned == 2


def test_hostile_names_are_escaped_in_the_tasks_log_lines(cluster, tmp_path, face_video,
                                                          scorer):
    """A task's log lines (in the worker's log file) go through the same escaping as the
    CLI's: a file name cannot forge a line or colour a terminal that shows the log."""
    from screener.api import scan
    clip = cut_short(face_video, tmp_path / FORGED_NAME)
    [r] = scan([clip], scorer=scorer, frames=12, engine="ray")
    assert r.status in ("ok", "no_face"), r.error
    logs = Path(cluster.head_node.get_session_dir_path()) / "logs"
    text = b"".join(p.read_bytes() for p in logs.rglob("worker-*") if p.is_file())
    shown = f"{tmp_path}/{FORGED_SHOWN}: ended after".encode()
    assert shown in text and b"\x1b[31m" not in text


def test_without_ray_the_cli_says_how_to_install_it(tmp_path, face_video):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from screener.cli import main; main()")
    p = subprocess.run([sys.executable, "-c", code, "scan", str(face_video), "--engine", "ray",
                        "--no-state"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "screener: error: the ray engine needs Ray: pip install 'screener[ray]'"]
    assert p.stdout == ""
