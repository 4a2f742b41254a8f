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
    from screener import faces
    det = faces.default_detector()
    d = {}
    for name in ("collins", "hopper", "hopper_grey"):
        img = synth.photo(name)
        face = det.detect(img, "largest")[0]
        d[name] = people.describe(faces.align(img, face.keypoints))
        small = faces.align(np.ascontiguousarray(img[::2, ::2]), face.keypoints / 2)
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
