"""training.sbi: self-blended pseudo-fakes, on a real face photo (no ../shared needed)."""
import numpy as np
import pytest

from screener import align, detect, synth
from training import sbi


@pytest.fixture(scope="module")
def face():
    """An aligned crop of a bundled photo and its keypoints in crop pixels."""
    det = detect.FaceDetector()
    try:
        found = align.align_image(synth.portrait("hopper"), det)
    finally:
        det.close()
    m = align.to_template(found.keypoints)
    return found.crop, (found.keypoints @ m[:, :2].T + m[:, 2]).astype(np.float32)


@pytest.mark.parametrize("seed", range(12))
def test_changes_only_pixels_inside_its_mask_and_the_mask_stays_in_the_face(face, seed):
    img, kp = face
    fake, mask = sbi.self_blend(img, kp, np.random.default_rng(seed))
    assert fake.shape == img.shape and fake.dtype == np.uint8
    changed = np.any(fake != img, axis=2)
    assert not changed[mask == 0].any()                    # outside the mask: the original bits
    assert mask.max() > 0 and (mask >= 0).all() and (mask <= 1).all()
    region = sbi.face_region(kp)
    assert not mask[region == 0].any()                     # the mask never leaves the face region
    # the region is the face: around the keypoints, well inside the crop's corners
    assert region[int(kp[2, 1]), int(kp[2, 0])] == 1 and region[:10, :10].sum() == 0


def test_most_pseudo_fakes_visibly_differ(face):
    img, kp = face
    diffs = [np.abs(sbi.self_blend(img, kp, np.random.default_rng(s))[0].astype(int) - img).mean()
             for s in range(20)]
    assert np.median(diffs) > 1.0


def test_deterministic_for_a_seed(face):
    img, kp = face
    a = sbi.self_blend(img, kp, np.random.default_rng(5))
    b = sbi.self_blend(img, kp, np.random.default_rng(5))
    c = sbi.self_blend(img, kp, np.random.default_rng(6))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_without_keypoints_the_template_stands_in(face):
    img, _ = face
    fake, mask = sbi.self_blend(img, None, np.random.default_rng(0))
    assert not mask[sbi.face_region(sbi.TEMPLATE_KEYPOINTS) == 0].any()
    assert not np.any(fake != img, axis=2)[mask == 0].any()
