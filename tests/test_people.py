"""screener.people: faces linked into people, on generated clips with known paths."""
import numpy as np
import pytest

from screener import people, synth
from screener.options import SampleOptions
from screener.pipeline import crops_from_video

P = synth.Placement
N, FPS = 64, 25


def line(a, b):
    """A path from corner a to corner b over the clip."""
    return lambda i: (round(a[0] + (b[0] - a[0]) * i / (N - 1)),
                      round(a[1] + (b[1] - a[1]) * i / (N - 1)))


SCENES = {
    "side by side": dict(faces=[P("collins", 40, 60, 80), P("hopper", 330, 70, 90)]),
    "three": dict(faces=[P("collins", 10, 60, 70), P("hopper", 220, 70, 70),
                         P("hopper_grey", 430, 60, 70)]),
    # Their paths cross mid-clip; Hopper, pasted last, hides Collins there.
    "crossing": dict(faces=[P("collins", 0, 0, 80, path=line((20, 80), (450, 60))),
                            P("hopper", 0, 0, 80, path=line((450, 70), (20, 80)))]),
    "leaving and returning": dict(faces=[
        P("collins", 40, 60, 80),
        P("hopper", 330, 70, 90, path=lambda i: None if 20 <= i < 44 else (330, 70))]),
    # A cut to another shot where the two have swapped sides.
    "a cut": dict(cut_at=32, faces=[
        P("collins", 0, 0, 80, path=lambda i: (40, 60) if i < 32 else (380, 90)),
        P("hopper", 0, 0, 90, path=lambda i: (330, 70) if i < 32 else (60, 60))]),
}


def truth(crop, placements):
    """The placement whose face is nearest the detected one in that frame."""
    i = round(crop.time_s * FPS)
    best = []
    for k, p in enumerate(placements):
        where = p.at(i)
        if where is not None:
            (x, y, w, h), _ = synth.face_truth(P(p.name, where[0], where[1], p.face_px))
            cx, cy = crop.box[0] + crop.box[2] / 2, crop.box[1] + crop.box[3] / 2
            best.append((np.hypot(x + w / 2 - cx, y + h / 2 - cy), k))
    return min(best)[1]


@pytest.mark.slow
@pytest.mark.parametrize("scene", list(SCENES))
def test_faces_are_linked_into_the_right_people_in_every_frame(tmp_path, scene):
    spec = SCENES[scene]
    clip = synth.face_clip(tmp_path / "c.mp4", 640, 360, N, fps=FPS, faces=spec["faces"],
                           cut_at=spec.get("cut_at"))
    video = crops_from_video(clip, SampleOptions(frames=32))  # the scan's: linked there
    ids = [c.person - 1 for c in video.crops]
    want = [truth(c, spec["faces"]) for c in video.crops]
    assert set(want) == set(range(len(spec["faces"])))  # every person was found at all
    mapping = {}
    for w, got in zip(want, ids):
        assert mapping.setdefault(w, got) == got, f"{scene}: person {w} split"
    assert len(set(mapping.values())) == len(mapping), f"{scene}: two people merged"
    assert sorted(set(ids)) == list(range(len(spec["faces"])))  # numbered from 1, in order seen
    per_frame = {}
    for c, i in zip(video.crops, ids):
        assert i not in per_frame.setdefault(c.time_s, set())  # never twice in one frame
        per_frame[c.time_s].add(i)


def test_descriptor_tells_people_apart_and_is_stable():
    from screener import align, detect
    det = detect.default_detector()
    d = {}
    for name in ("collins", "hopper", "hopper_grey"):
        img = synth.photo(name)
        face = det.detect(img, "largest")[0]
        d[name] = people.describe(align.align(img, face.keypoints))
        small = align.align(np.ascontiguousarray(img[::2, ::2]), face.keypoints / 2)
        assert float(d[name] @ people.describe(small)) > people.LinkOptions().near_alike
    o = people.LinkOptions()
    for a, b in (("collins", "hopper"), ("hopper", "hopper_grey"), ("collins", "hopper_grey")):
        assert float(d[a] @ d[b]) < o.reid_alike
    assert all(abs(float(np.linalg.norm(v)) - 1) < 1e-5 for v in d.values())


def test_two_faces_of_one_frame_are_never_one_person():
    rng = np.random.default_rng(0)
    same = rng.random(16).astype(np.float32)
    same /= np.linalg.norm(same)
    linker = people.Linker()
    # Identical looks side by side: still two people, each followed on its side.
    first = linker.add(0, [(10, 10, 50, 50), (200, 10, 50, 50)], [same, same])
    second = linker.add(1, [(205, 12, 50, 50), (12, 11, 50, 50)], [same, same])
    assert first == [0, 1] and second == [1, 0]


class GreyIsFake:
    """A scorer that marks one person: a face without colour (synth's `hopper_grey`) scores
    0.9, any other 0.1. The scan, linking and verdict around it are the real ones."""

    class card:  # noqa: N801 - mimics scoring.ModelCard
        name = "grey-is-fake"
        threshold = 0.5

    def predict(self, crops, batch_size=256):
        import cv2
        sat = [cv2.cvtColor(np.ascontiguousarray(c[40:232, 40:216]),
                            cv2.COLOR_RGB2HSV)[..., 1].mean()
               for c in np.asarray(crops)]
        return np.where(np.array(sat) < 12, 0.9, 0.1).astype(np.float32)


def scan_one(path, **kw):
    import screener
    [r] = screener.scan(path, scorer=GreyIsFake(), frames=32, **kw)
    return r


@pytest.mark.slow
def test_the_fake_person_decides_and_the_others_stay_low(tmp_path):
    spec = SCENES["three"]
    clip = synth.face_clip(tmp_path / "three.mp4", 640, 360, N, fps=FPS, faces=spec["faces"])
    r = scan_one(clip)
    assert (r.status, r.verdict, r.people, r.fake_person) == ("ok", "FAKE", 3, 3)
    assert r.fake_score == pytest.approx(0.9) and r.note == ""
    assert [(q.id, q.faces, q.low_evidence) for q in r.persons] == [
        (1, 32, False), (2, 32, False), (3, 32, False)]
    assert [round(q.fake_score, 3) for q in r.persons] == [0.1, 0.1, 0.9]
    # Which face is whose: the grey one, third from the left, is person 3 in every frame.
    assert {f.person for f in r.faces if f.box_x > 400} == {3}
    # Pooled, as --largest-face or a mean over every face would be, the fake one is diluted.
    assert np.mean([f.p_fake for f in r.faces]) < 0.5
    largest = scan_one(clip, largest_face=True)
    assert largest.verdict == "REAL" and largest.people is None and largest.persons == []


@pytest.mark.slow
def test_a_passer_by_is_reported_but_does_not_decide(tmp_path):
    # Collins throughout; a grey (fake-scored) face in source frames 16-19, i.e. sampled
    # frames 8 and 9 of 32: the 8th is searched whole, the 9th follows it.
    faces = [P("collins", 40, 60, 80),
             P("hopper_grey", 360, 70, 80, path=lambda i: (360, 70) if 16 <= i < 20 else None)]
    clip = synth.face_clip(tmp_path / "passer.mp4", 640, 360, N, fps=FPS, faces=faces)
    r = scan_one(clip)
    assert (r.verdict, r.people, r.fake_person, r.faces_scored) == ("REAL", 1, 1, 34)
    assert r.fake_score == pytest.approx(0.1)
    [collins, passer] = r.persons
    assert (collins.faces, collins.low_evidence) == (32, False)
    assert (passer.faces, passer.frames, passer.low_evidence) == (2, 2, True)
    assert passer.fake_score == pytest.approx(0.9)
    assert (passer.first_s, passer.last_s) == pytest.approx((16 / FPS, 18 / FPS))


@pytest.mark.slow
def test_one_person_gets_the_row_of_largest_face_mode(face_video, scorer):
    import screener
    [people_row] = screener.scan(face_video, scorer=scorer)
    [largest_row] = screener.scan(face_video, scorer=scorer, largest_face=True)
    assert (people_row.people, people_row.fake_person) == (1, 1)
    same = {k: v for k, v in people_row.row().items() if k not in ("people", "fake_person")}
    assert same == {k: v for k, v in largest_row.row().items()
                    if k not in ("people", "fake_person")}
    assert [f.p_fake for f in people_row.faces] == [f.p_fake for f in largest_row.faces]


@pytest.mark.slow
def test_the_sample_two_people_clip_has_two_people():
    from pathlib import Path
    from helpers import StubScorer
    import screener
    clip = Path(__file__).resolve().parents[1] / "sample_videos" / "two_people.mp4"
    [r] = screener.scan(clip, scorer=StubScorer())
    assert r.people == 2 and [(q.faces, q.low_evidence) for q in r.persons] == [
        (32, False), (32, False)]
