"""The per-video unit: frames -> faces -> crops, never raising for bad input."""
import pytest

from screener import synth
from screener.pipeline import SampleOptions, crops_from_video
from screener.synth import Placement


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    return synth.face_clip(tmp_path_factory.mktemp("p") / "two.mp4", 640, 360, 12,
                           faces=[Placement("collins", 20, 20, 120), Placement("hopper", 380, 60, 80)])


def test_largest_face_per_frame(two_faces):
    r = crops_from_video(two_faces, SampleOptions(frames=4))
    assert r.error is None and r.frames_sampled == 4 and r.frames_with_face == 4
    assert len(r.crops) == 4
    assert all(c.face_index == 0 and c.box[2] > 100 for c in r.crops)
    assert [c.frame_index for c in r.crops] == [0, 4, 7, 11]
    assert all(c.crop.shape == (256, 256, 3) for c in r.crops)


def test_all_faces(two_faces):
    r = crops_from_video(two_faces, SampleOptions(frames=4, all_faces=True))
    assert len(r.crops) == 8
    assert sorted({c.face_index for c in r.crops}) == [0, 1]


def test_faces_below_min_face_are_counted_not_cropped(two_faces):
    r = crops_from_video(two_faces, SampleOptions(frames=4, all_faces=True, min_face=100))
    assert len(r.crops) == 4 and r.faces_too_small == 4


def test_bad_file_is_an_error_not_an_exception(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope" * 100)
    r = crops_from_video(bad)
    assert r.error and "not a video" in r.error and r.crops == [] and r.info is None


def test_no_face(tmp_path):
    p = synth.face_clip(tmp_path / "empty.mp4", 320, 240, 6)
    r = crops_from_video(p, SampleOptions(frames=3))
    assert r.error is None and r.frames_sampled == 3 and r.frames_with_face == 0 and not r.crops
