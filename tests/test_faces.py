"""Detection and alignment on frames where the truth is known (public-domain photos pasted)."""
import numpy as np
import pytest

from screener import align, detect, synth
from screener.synth import Placement


@pytest.fixture(scope="module")
def detector():
    d = detect.FaceDetector()
    yield d
    d.close()


def frame_with(width, height, *placements, seed=0):
    f = synth.background(width, height, seed)
    for p in placements:
        synth.paste(f, synth.portrait(p.name), p.x, p.y, p.width)
    return f


def keypoint_error(found: detect.Face, placement: Placement) -> float:
    _, truth = synth.face_truth(placement)
    return float(np.linalg.norm(found.keypoints[:4] - truth, axis=1).max())


@pytest.mark.parametrize("name", ["collins", "hopper"])
def test_face_filling_the_frame(detector, name):
    p = Placement(name, -60, -90, 260)  # portrait bigger than the 480x360 frame
    found = detector.detect(frame_with(480, 360, p))
    assert len(found) == 1
    assert found[0].size_px > 200
    assert keypoint_error(found[0], p) < 0.1 * p.face_px


@pytest.mark.parametrize("name,x,y", [("collins", 1500, 800), ("hopper", 300, 150)])
def test_64px_face_in_1080p(detector, name, x, y):
    p = Placement(name, x, y, 64)
    found = detector.detect(frame_with(1920, 1080, p))
    assert len(found) == 1, found
    assert 48 < found[0].size_px < 90
    assert keypoint_error(found[0], p) < 6  # pixels, after the close-up refinement


@pytest.mark.parametrize("mode", ["all", "largest", "whole", "crop"])
def test_no_face(detector, mode):
    assert detector.detect(synth.background(1920, 1080, 3), mode) == []


@pytest.mark.parametrize("face_px", [64, 300])
def test_largest_mode_finds_the_largest_face(detector, face_px):
    p = Placement("hopper", 200, 100, face_px)
    found = detector.detect(frame_with(1920, 1080, p, Placement("collins", 1500, 700, 40)), "largest")
    assert found and abs(found[0].size_px - face_px) < 0.3 * face_px


def test_two_faces_largest_first(detector):
    found = detector.detect(frame_with(1280, 720, Placement("hopper", 900, 300, 80),
                                       Placement("collins", 50, 50, 220)))
    assert len(found) == 2
    assert found[0].size_px > found[1].size_px


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (6, 2))
    a = np.deg2rad(17)
    m = 1.7 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ m.T + [12, -5]
    got = align.similarity(src, dst)
    np.testing.assert_allclose(got[:, :2], m, atol=1e-9)
    np.testing.assert_allclose(got[:, 2], [12, -5], atol=1e-9)


@pytest.mark.parametrize("scale,angle_deg", [(0.3, 0), (1.0, 12), (2.5, -20), (6.0, 5)])
def test_known_keypoints_land_on_template(scale, angle_deg):
    """Four marker dots placed where a face's eyes, nose and mouth would be (a similarity of
    the template: any size, any roll) end up on the template in the crop, to the pixel.
    Covers the shrink-first path (scale > 2)."""
    import cv2
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = (align.TEMPLATE * 256 - 128) @ rot.T + [900, 700]
    frame = np.full((1400, 1800, 3), 40, np.uint8)
    for k, (x, y) in enumerate(pts):
        cv2.circle(frame, (int(round(x)), int(round(y))), max(2, int(4 * scale)),
                   [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)][k], -1, cv2.LINE_AA)
    kp = np.zeros((6, 2))
    kp[:4] = pts
    crop = align.align(frame, kp)
    for k, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]):
        mask = np.all(np.abs(crop.astype(int) - colour) < 90, axis=2)
        ys, xs = np.nonzero(mask)
        assert len(xs), f"marker {k} missing"
        centre = np.array([xs.mean(), ys.mean()])
        assert np.linalg.norm(centre - align.TEMPLATE[k] * 256) < 1.5


@pytest.mark.parametrize("face_px", [64, 150, 400])
def test_detected_face_aligns_near_template(detector, face_px):
    """The whole chain on a real face: detect in the frame, align, detect again in the crop.
    BlazeFace's keypoints wobble by a few percent of the face and faces differ in shape, so the
    tolerance is 14 px in the 256 crop (5%)."""
    p = Placement("collins", 40, 30, face_px)
    w = max(640, p.width + 80)
    frame = frame_with(w, w, p)
    found = detector.detect(frame)
    assert found
    crop = align.align(frame, found[0].keypoints)
    again = detector.detect(crop, "crop")
    assert again
    err = np.linalg.norm(again[0].keypoints[:4] - align.TEMPLATE * 256, axis=1)
    assert err.max() < 14, err


def test_align_image_and_fallback(detector):
    face = align.align_image(synth.portrait("hopper"), detector)
    assert face is not None and face.crop.shape == (256, 256, 3)
    assert align.align_image(synth.background(200, 200), detector) is None
    assert align.resize_to_model(synth.background(100, 140)).shape == (256, 256, 3)


def test_tiles_cover_the_frame():
    ts = detect.tiles(3840, 2160)
    cover = np.zeros((2160, 3840), bool)
    for x, y, w, h in ts:
        cover[y:y + h, x:x + w] = True
    assert cover.all()
    assert detect.tiles(800, 600) == [(0, 0, 800, 600)]


class CountingDetector(detect.FaceDetector):
    """The real detector, counting its model runs."""
    runs = 0

    def _run(self, *a, **kw):
        self.runs += 1
        return super()._run(*a, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("width,height,face_px", [(1920, 1080, 260), (1280, 720, 160), (640, 360, 150)])
def test_track_follows_a_face_with_one_run(width, height, face_px):
    det = CountingDetector()
    try:
        first = Placement("hopper", width // 4, height // 8, face_px)
        moved = Placement("hopper", width // 4 + face_px // 5, height // 8 + 6, face_px)
        prev = det.detect(frame_with(width, height, first), "largest")[0]
        det.runs = 0
        found = det.track(frame_with(width, height, moved), prev)
        assert det.runs == 1
        assert found is not None and found.score >= detect.SURE_SCORE
        assert keypoint_error(found, moved) < 0.1 * face_px
        # The whole-frame cascade on the same frame is no more accurate, and costs more runs.
        det.runs = 0
        full = det.detect(frame_with(width, height, moved), "largest")[0]
        assert det.runs >= 2
        assert keypoint_error(found, moved) < keypoint_error(full, moved) + 0.05 * face_px
    finally:
        det.close()


def test_track_gives_up_when_the_face_is_gone_or_elsewhere(detector):
    p = Placement("collins", 200, 100, 200)
    prev = detector.detect(frame_with(1280, 720, p), "largest")[0]
    assert detector.track(synth.background(1280, 720, 1), prev) is None
    assert detector.track(frame_with(1280, 720, Placement("collins", 900, 300, 200)), prev) is None
    # Much bigger now (a zoom or a cut): the whole frame must be searched again.
    assert detector.track(frame_with(1280, 720, Placement("collins", 150, 50, 420)), prev) is None


def _source_outside(frame_shape, kp, size=256):
    """Which crop pixels map outside the frame (their centres), by the alignment's transform."""
    import cv2
    inv = cv2.invertAffineTransform(align.to_template(kp, size))
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    h, w = frame_shape[:2]
    return (sx < 0) | (sy < 0) | (sx > w) | (sy > h), (sx < -1.5) | (sy < -1.5) | (sx > w + 1.5) | (sy > h + 1.5)


@pytest.mark.parametrize("face_px", [120, 700])  # 700: the shrink-first path
def test_face_at_the_frame_edge_is_padded_black_never_mirrored(face_px):
    """The part of the crop outside the frame is black; the frame's content is never reflected
    into it (a mirrored half-face is a second pair of eyes)."""
    p = Placement("collins", round(-0.6 * face_px) - face_px // 12, round(-0.6 * face_px), face_px)
    w = max(640, 3 * face_px)
    frame = frame_with(w, w * 9 // 16, p)
    _, kp4 = synth.face_truth(p)
    kp = np.zeros((6, 2))
    kp[:4] = kp4
    crop = align.align(frame, kp)
    outside, far_outside = _source_outside(frame.shape, kp)
    assert far_outside.mean() > 0.3
    assert crop[far_outside].max() == 0           # black, not image content
    assert crop[~outside].reshape(-1, 3).mean(0).min() > 30  # the face itself is there
    assert align.outside_share(frame.shape, kp) == pytest.approx(outside.mean(), abs=0.02)


def test_face_inside_the_frame_has_nothing_outside():
    p = Placement("hopper", 200, 40, 120)
    _, kp4 = synth.face_truth(p)
    kp = np.zeros((6, 2))
    kp[:4] = kp4
    assert align.outside_share((480, 640, 3), kp) == 0.0


def test_align_image_cuts_from_the_image_not_its_detection_border(detector):
    """A tight crop is found on a mirrored border, but the crop is cut from the image alone:
    what lies beyond the image is black."""
    img = synth.portrait("hopper")
    tight = img[img.shape[0] // 5: -img.shape[0] // 5, img.shape[1] // 5: -img.shape[1] // 5].copy()
    face = align.align_image(tight, detector)
    assert face is not None
    outside, far_outside = _source_outside(tight.shape, face.keypoints)
    assert far_outside.any() and face.crop[far_outside].max() == 0
