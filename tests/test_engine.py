"""The pipelined local engine: same results whatever the number of workers, in input order,
and a worker that dies costs one error row, not the scan."""
import numpy as np
import pytest

from helpers import bad_inputs, copy
from screener.engines.local import LocalEngine
from screener.options import EngineOptions, SampleOptions


@pytest.fixture(scope="module")
def folder(tmp_path_factory, face_video, two_face_video, no_face_video):
    d = tmp_path_factory.mktemp("engine")
    paths = [copy(face_video, d / "a_face.mp4"), copy(no_face_video, d / "b_none.mp4"),
             copy(two_face_video, d / "c_two.mp4")]
    bad = bad_inputs(d / "bad", face_video)
    paths += [bad["text"], bad["truncated"], copy(face_video, d / "d_face_again.mp4")]
    return [str(p) for p in paths]


def rows(results):
    return [(r.path, r.status, r.verdict, r.fake_score, r.faces_scored, r.frames_with_face,
             r.error, [(f.frame_index, f.face_index, round(f.p_fake, 6)) for f in r.faces])
            for r in results]


@pytest.mark.slow
def test_same_results_with_0_1_and_2_workers(folder, stub_scorer):
    opts = SampleOptions(frames=6)
    runs = {}
    for workers in (0, 1, 2):
        with LocalEngine(stub_scorer, opts, EngineOptions(batch_size=7, workers=workers)) as engine:
            runs[workers] = rows(engine.run(folder))
    assert runs[0] == runs[1] == runs[2]
    assert [r[0] for r in runs[2]] == folder  # input order
    statuses = [r[1] for r in runs[2]]
    assert statuses == ["ok", "no_face", "ok", "error", "error", "ok"]
    assert runs[2][2][4] == 12  # two faces in each of 6 frames


@pytest.mark.slow
def test_pool_is_reused_across_runs(folder, stub_scorer):
    with LocalEngine(stub_scorer, SampleOptions(frames=2), EngineOptions(workers=2)) as engine:
        first = rows(engine.run(folder[:3]))
        pool = engine.reader._pool
        second = rows(engine.run(folder[:3]))
        assert engine.reader._pool is pool and pool is not None
    assert first == second
    assert engine.reader._pool is None


@pytest.mark.slow
def test_a_worker_that_dies_costs_one_row(folder, stub_scorer, monkeypatch):
    monkeypatch.setenv("SCREENER_TEST_KILL_WORKER_ON", "c_two")
    with LocalEngine(stub_scorer, SampleOptions(frames=3), EngineOptions(workers=2)) as engine:
        results = list(engine.run(folder))
    assert [r.path for r in results] == folder
    dead = results[2]
    assert dead.status == "error" and "worker process died" in dead.error
    assert [r.status for r in results] == ["ok", "no_face", "error", "error", "error", "ok"]
    assert np.isclose(results[0].fake_score, results[5].fake_score)


@pytest.mark.slow
def test_a_video_over_the_time_limit_costs_one_row(folder, stub_scorer, monkeypatch):
    # c_two's worker never returns (as a decoder stuck in native code): with a limit it ends
    # itself, that video is an error row, and every other row is what a normal run gives.
    opts = SampleOptions(frames=3)
    with LocalEngine(stub_scorer, opts, EngineOptions(workers=2)) as engine:
        normal = rows(engine.run(folder))
    monkeypatch.setenv("SCREENER_TEST_HANG_WORKER_ON", "c_two")
    with LocalEngine(stub_scorer, opts, EngineOptions(workers=2, video_timeout_s=3)) as engine:
        results = list(engine.run(folder))
        stats = engine.reader._pool.stats
    assert stats["timed_out"] == 1 and stats["retried"] == 0  # never retried: it would hang again
    limited = rows(results)
    assert limited[2][1] == "error" and "longer than the 3 s limit" in limited[2][6]
    assert limited[:2] + limited[3:] == normal[:2] + normal[3:]


def test_a_time_limit_needs_workers():
    with pytest.raises(ValueError, match="worker processes"):
        EngineOptions(workers=0, video_timeout_s=5)
