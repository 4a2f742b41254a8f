"""screener.scan end to end on generated clips: every bad input, sampling options, batching."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import screener
from screener import synth
from screener.engines.local import LocalEngine
from screener.options import EngineOptions, SampleOptions

from helpers import CONST_P_FAKE, bad_inputs, copy, one_face


def by_name(results):
    return {os.path.basename(r.path): r for r in results}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, face_video, no_face_video):
    """A folder with good clips, odd clips and every broken input of the issue."""
    root = tmp_path_factory.mktemp("zoo")
    copy(face_video, root / "face.mp4")
    copy(no_face_video, root / "no_face.mp4")
    synth.face_clip(root / "one_frame.mp4", 320, 240, n_frames=1, faces=[one_face()])
    synth.face_clip(root / "odd_321x241.mp4", 321, 241, n_frames=6, faces=[one_face()],
                    pix_fmt="yuv444p")   # x264 needs even sizes for 4:2:0, not for 4:4:4
    synth.face_clip(root / "tall_180x320.mp4", 180, 320, n_frames=6,
                    faces=[one_face(x=0, y=60, face_px=80)])
    synth.face_clip(root / "uhd_4k.mp4", 3840, 2160, n_frames=2,
                    faces=[one_face(x=1500, y=700, face_px=400)])
    copy(face_video, root / "sub" / "vidéo 日本.mp4")
    copy(face_video, root / "sub" / "=HYPERLINK(1).mp4")
    os.symlink("..", root / "sub" / "loop")            # folder loop
    os.symlink("self.mp4", root / "sub" / "self.mp4")  # file link pointing at itself
    bad_inputs(root / "bad", face_video)
    return root


@pytest.fixture(scope="module")
def zoo_results(zoo, scorer):
    return screener.scan([zoo], scorer=scorer, frames=4)


def test_one_row_per_file_in_sorted_order(zoo, zoo_results):
    names = [os.path.relpath(r.path, zoo) for r in zoo_results]
    assert names == [
        "bad/audio_only.mp4", "bad/notes.mp4", "bad/truncated.mp4", "bad/unknown_codec.mp4",
        "bad/zero.mp4", "face.mp4", "no_face.mp4", "odd_321x241.mp4", "one_frame.mp4",
        "sub/=HYPERLINK(1).mp4", "sub/self.mp4", "sub/vidéo 日本.mp4",
        "tall_180x320.mp4", "uhd_4k.mp4"]


@pytest.mark.parametrize("name, words", [
    ("zero.mp4", ["empty"]),
    ("truncated.mp4", ["truncated"]),
    ("notes.mp4", ["not a video"]),
    ("audio_only.mp4", ["no video stream", "audio"]),
    ("unknown_codec.mp4", []),
    ("self.mp4", ["link"]),
])
def test_bad_inputs_get_an_error_row_with_a_reason(zoo_results, name, words):
    r = by_name(zoo_results)[name]
    assert r.status == "error", r
    assert r.verdict == "" and r.fake_score is None and r.faces_scored == 0
    assert r.error and "\n" not in r.error
    for w in words:
        assert w in r.error.lower()


@pytest.mark.parametrize("name, size", [
    ("face.mp4", (320, 240)), ("one_frame.mp4", (320, 240)), ("odd_321x241.mp4", (321, 241)),
    ("tall_180x320.mp4", (180, 320)), ("uhd_4k.mp4", (3840, 2160)), ("vidéo 日本.mp4", (320, 240)),
    ("=HYPERLINK(1).mp4", (320, 240)),
])
def test_readable_clips_with_a_face_are_scored(zoo_results, name, size):
    r = by_name(zoo_results)[name]
    assert r.status == "ok", r
    assert (r.width, r.height) == size and r.codec == "h264" and r.fps == pytest.approx(25)
    assert r.frames_with_face == r.frames_sampled == r.faces_scored > 0
    assert r.fake_score == pytest.approx(CONST_P_FAKE, abs=1e-4) and r.verdict == "FAKE"
    assert r.model == "tiny-test" and r.threshold == 0.5 and r.error == ""


def test_one_frame_and_no_face(zoo_results):
    assert by_name(zoo_results)["one_frame.mp4"].frames_sampled == 1
    r = by_name(zoo_results)["no_face.mp4"]
    assert (r.status, r.verdict, r.fake_score, r.frames_sampled) == ("no_face", "", None, 4)
    assert "no face" in r.error


def test_unreadable_file(tmp_path, face_video, scorer):
    path = copy(face_video, tmp_path / "locked.mp4")
    os.chmod(path, 0)
    try:
        if os.geteuid() != 0:
            [r] = screener.scan([path], scorer=scorer, frames=2)
            assert r.status == "error" and "permission denied" in r.error
            return
        # Root reads any file: scan in a child that keeps uid 0 but loses the capabilities
        # that bypass file permissions (as a container without CAP_DAC_OVERRIDE would).
        if not shutil.which("setpriv"):
            pytest.skip("running as root and setpriv (util-linux) is not installed")
        code = STUB + textwrap.dedent(f"""
            [r] = screener.scan([{str(path)!r}], scorer=Stub(), frames=2)
            print(r.status, r.error, sep="|")
        """)
        out = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                              "--", sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=str(Path(__file__).parents[1]), timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        status, reason = out.stdout.strip().splitlines()[-1].split("|")
        assert status == "error" and "permission denied" in reason
    finally:
        os.chmod(path, 0o644)


STUB = textwrap.dedent("""
    import screener
    class Card: name = "stub"; threshold = 0.5
    class Stub:
        card = Card
        def predict(self, crops, batch_size=1): return crops.reshape(len(crops), -1).mean(1) / 255
""")


def test_name_that_is_not_utf8(tmp_path, face_video):
    """A Linux file name may be any bytes. Run in a child: a crash must fail this test only."""
    path = copy(face_video, tmp_path / os.fsdecode(b"latin1-\xe9.mp4"))
    code = STUB + textwrap.dedent(f"""
        import os
        [r] = screener.scan([os.fsdecode({os.fsencode(path)!r})], scorer=Stub(), frames=2)
        print(r.status, r.faces_scored, r.error, sep="|")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(Path(__file__).parents[1]), timeout=120)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-1500:]}"
    assert out.stdout.strip().splitlines()[-1] == "ok|2|"


def test_sampling_options(face_video, scorer):
    # face_video: 12 frames at 25 fps (0.48 s)
    [r] = screener.scan(face_video, scorer=scorer, frames=4)
    assert r.frames_sampled == 4
    [r] = screener.scan(face_video, scorer=scorer, frames=100)
    assert r.frames_sampled == 12   # never more than the video has
    [r] = screener.scan(face_video, scorer=scorer, every_s=0.2)
    assert r.frames_sampled == 3    # frames 0, 5, 10


def test_people_and_largest_face(two_face_video, scorer):
    [one] = screener.scan(two_face_video, scorer=scorer, frames=3, largest_face=True)
    [every] = screener.scan(two_face_video, scorer=scorer, frames=3)
    assert one.faces_scored == 3 and every.faces_scored == 6
    assert one.people is None and one.fake_person is None and one.persons == []
    assert every.people == 0  # 3 faces each: too few to decide, so every face counts, pooled
    assert every.fake_person is None and every.note.startswith("low evidence")
    assert [(q.id, q.faces, q.frames, q.low_evidence) for q in every.persons] == [
        (1, 3, 3, True), (2, 3, 3, True)]
    assert every.fake_score == pytest.approx(
        sum(f.p_fake for f in every.faces) / 6, abs=1e-9)
    assert one.frames_with_face == every.frames_with_face == 3
    assert sorted({f.face_index for f in every.faces}) == [0, 1]
    assert {f.face_index for f in one.faces} == {0}
    # the face scored alone is the largest of its frame
    first = {f.frame_index: f for f in every.faces if f.face_index == 0}
    second = {f.frame_index: f for f in every.faces if f.face_index == 1}
    assert all(first[k].box_w >= second[k].box_w for k in first)
    assert [f.frame_index for f in one.faces] == list(first)
    assert all(abs(f.box_x - first[f.frame_index].box_x) < 4 for f in one.faces)


@pytest.mark.slow
def test_batches_across_videos_keep_each_score_on_its_video(
        face_video, no_face_video, two_face_video, make_clip, detector, stub_scorer):
    hopper = make_clip("hopper.mp4", faces=[one_face("hopper")])
    paths = [str(p) for p in (face_video, no_face_video, hopper, two_face_video, face_video)]
    opts = SampleOptions(frames=3)
    pooled = list(LocalEngine(stub_scorer, opts, EngineOptions(batch_size=1000), detector).run(paths))
    assert stub_scorer.calls == [3 + 0 + 3 + 6 + 3]   # one model call for all five videos
    alone = [r for p in paths
             for r in LocalEngine(stub_scorer, opts, EngineOptions(batch_size=1), detector).run([p])]
    assert [r.path for r in pooled] == paths           # input order, no_face included
    assert [r.row() for r in pooled] == [r.row() for r in alone]
    assert pooled[0].fake_score != pooled[2].fake_score  # different faces, different scores


def test_a_bug_on_one_video_does_not_stop_the_scan(monkeypatch, face_video, no_face_video,
                                                   detector, stub_scorer):
    from screener import pipeline
    real = pipeline.crops_from_video

    def flaky(path, options, det=None):
        if path == str(no_face_video):
            raise RuntimeError("boom")
        return real(path, options, det)
    monkeypatch.setattr(pipeline, "crops_from_video", flaky)
    # in this process, where the monkeypatch applies
    engine = LocalEngine(stub_scorer, SampleOptions(frames=2), EngineOptions(workers=0), detector)
    results = list(engine.run([str(face_video), str(no_face_video), str(face_video)]))
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert "boom" in results[1].error


def test_nothing_to_scan_raises_before_reading(tmp_path, scorer):
    from screener.discover import InputError
    with pytest.raises(InputError):
        screener.scan([tmp_path / "missing.mp4"], scorer=scorer)


SHARED_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos-dev"
DEV_CLIPS = sorted(p.name for p in SHARED_DEV.glob("*.mp4")) if SHARED_DEV.is_dir() else []


@pytest.fixture(scope="module")
def dev_results(stub_scorer_module):
    return by_name(screener.scan([SHARED_DEV], scorer=stub_scorer_module))


@pytest.fixture(scope="module")
def stub_scorer_module():
    from helpers import StubScorer
    return StubScorer()


@pytest.mark.slow
@pytest.mark.skipif(not DEV_CLIPS, reason="../shared/data/videos-dev is not present")
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(
        reason="people walking away: 5 of the 32 sampled frames show no face at all (frames "
               "157, 165, 220, 236, 244: backs of heads), so 90% is out of any detector's "
               "reach; 21 of the other 27 faces are 35-55 px wide, under the default "
               "--min-face 64, where the model is near chance (README)", strict=False))
    if n == "dumdum.mp4" else n for n in DEV_CLIPS])
def test_shared_dev_clips_have_a_face_in_90_percent_of_frames(dev_results, name):
    r = dev_results[name]
    assert r.status == "ok", r.error
    assert r.frames_with_face >= 0.9 * r.frames_sampled, (r.frames_with_face, r.frames_sampled)


@pytest.mark.slow
@pytest.mark.skipif(not DEV_CLIPS, reason="../shared/data/videos-dev is not present")
@pytest.mark.parametrize("name", [n for n in DEV_CLIPS if n.startswith(("dfdc_", "ffpp_"))])
def test_shared_dev_clips_show_one_person(dev_results, name):
    """Each of these DFDC and FF++ clips shows one person (checked by eye on a contact sheet
    per person: bench/people_sheet.py). A stray detection may be a person of its own (a face
    in the background of dfdc_brtujopkby, in one frame), but never one who is judged."""
    r = dev_results[name]
    assert r.people == 1 and r.fake_person == 1, [(q.id, q.faces) for q in r.persons]
    assert r.persons[0].faces == r.frames_sampled

