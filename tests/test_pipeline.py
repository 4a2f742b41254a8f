"""The per-video unit: frames -> faces -> crops, never raising for bad input."""
import pytest

from screener import synth
from screener.options import SampleOptions
from screener.pipeline import crops_from_video
from screener.synth import Placement


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    return synth.face_clip(tmp_path_factory.mktemp("p") / "two.mp4", 640, 360, 12,
                           faces=[Placement("collins", 20, 20, 120), Placement("hopper", 380, 60, 80)])


def test_largest_face_per_frame(two_faces):
    r = crops_from_video(two_faces, SampleOptions(frames=4, largest_face=True))
    assert r.error is None and r.frames_sampled == 4 and r.frames_with_face == 4
    assert len(r.crops) == 4
    assert all(c.face_index == 0 and c.box[2] > 100 for c in r.crops)
    assert [c.frame_index for c in r.crops] == [0, 4, 7, 11]
    assert all(c.crop.shape == (256, 256, 3) for c in r.crops)


def test_every_face_is_kept_and_linked_into_people(two_faces):
    r = crops_from_video(two_faces, SampleOptions(frames=4))
    assert len(r.crops) == 8
    assert sorted({c.face_index for c in r.crops}) == [0, 1]
    assert sorted({c.person for c in r.crops}) == [1, 2]
    for who in (1, 2):  # each person stays on their side of the frame
        xs = [c.box[0] for c in r.crops if c.person == who]
        assert max(xs) - min(xs) < 20
    largest = crops_from_video(two_faces, SampleOptions(frames=4, largest_face=True))
    assert len(largest.crops) == 4 and {c.person for c in largest.crops} == {None}


def test_faces_below_min_face_are_counted_not_cropped(two_faces):
    # research_every=0: every frame searched whole (a face kept is followed, one too small
    # is not, so it would be counted only where the whole frame is searched).
    r = crops_from_video(two_faces, SampleOptions(frames=4, min_face=100, research_every=0))
    assert len(r.crops) == 4 and r.faces_too_small == 4


@pytest.mark.parametrize("shift, cut_off", [(-10, True), (10, False)])
def test_face_cut_off_by_the_frame_edge_is_counted_not_scored(tmp_path, shift, cut_off):
    """A face in the frame's corner: with 0.4 of its crop outside the frame (beyond
    align.MAX_OUTSIDE) it is counted and not cropped; with 0.2 it is cropped as usual."""
    from screener import align
    from screener.verdict import aggregate
    p = Placement("collins", -72 + shift, -72 + shift, 120)
    clip = synth.face_clip(tmp_path / "corner.mp4", 640, 360, 6, faces=[p])
    r = crops_from_video(clip, SampleOptions(frames=3))
    assert r.error is None and r.frames_sampled == 3
    if cut_off:
        assert r.crops == [] and r.faces_cut_off == 3
        v = aggregate(r, [], model="m", threshold=0.5)
        assert v.status == "no_face" and "3 faces cut off by the frame edge" in v.error
    else:
        assert len(r.crops) == 3 and r.faces_cut_off == 0
        assert all(align.outside_share((360, 640), c.keypoints) <= align.MAX_OUTSIDE
                   for c in r.crops)


def test_bad_file_is_an_error_not_an_exception(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope" * 100)
    r = crops_from_video(bad)
    assert r.error and "not a video" in r.error and r.crops == [] and r.info is None


def test_no_face(tmp_path):
    p = synth.face_clip(tmp_path / "empty.mp4", 320, 240, 6)
    r = crops_from_video(p, SampleOptions(frames=3))
    assert r.error is None and r.frames_sampled == 3 and r.frames_with_face == 0 and not r.crops


@pytest.fixture(scope="module")
def face_walks_in(tmp_path_factory):
    """collins (100 px) throughout; hopper (220 px, the largest) from frame 4 on."""
    bg = synth.background(960, 540, 2)
    small, big = synth.portrait("collins"), synth.portrait("hopper")
    frames = []
    for i in range(16):
        f = synth.paste(bg.copy(), small, 40 + i, 300, Placement("collins", 0, 0, 100).width)
        if i >= 4:
            synth.paste(f, big, 500, 40, Placement("hopper", 0, 0, 220).width)
        frames.append(f)
    return synth.write_video(tmp_path_factory.mktemp("w") / "walk_in.mp4", frames)


def test_followed_face_yields_to_a_larger_one_at_the_next_search(face_walks_in):
    sizes = {}
    for every in (0, 8):
        r = crops_from_video(face_walks_in, SampleOptions(frames=16, research_every=every,
                                                           largest_face=True))
        assert r.frames_with_face == 16
        sizes[every] = [c.box[2] for c in r.crops]
    big = [s > 160 for s in sizes[0]]
    assert big == [False] * 4 + [True] * 12  # every frame searched: the larger face at once
    # Followed: the small face until the search at frame 8, then the larger one.
    assert [s > 160 for s in sizes[8]] == [False] * 8 + [True] * 8
