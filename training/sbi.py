"""Self-blended images: pseudo-fakes made from a real face, after Shiohara and Yamasaki,
"Detecting Deepfakes with Self-Blended Images" (CVPR 2022), implemented from its description.

From an aligned real crop: a copy of the same face is altered a little (colour, brightness,
contrast; then blur by resampling, or sharpening; then a small scale and shift) and blended back
onto the original inside a mask of the face region. The mask is a hull of the face's own
keypoints (one of several shapes), deformed, feathered at its edge and multiplied by a random
blend ratio; it never leaves `face_region`, and outside it the original pixels are kept exactly.
The result is labelled fake (1). What it teaches is what face swaps leave at the seam (a blending
boundary, a colour or sharpness mismatch), not the fingerprint of one generator.

Keypoints are BlazeFace's six (right eye, left eye, nose tip, mouth, right ear, left ear) in crop
pixels, as `training.align` records them in faces.csv; `TEMPLATE_KEYPOINTS` (the median over the
aligned MesoNet and DFDC crops) stands in for a crop without them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

TEMPLATE_KEYPOINTS = np.array([[88.5, 91.0], [168.0, 90.0], [127.0, 131.5], [128.0, 174.0],
                               [49.0, 111.5], [211.0, 110.5]], np.float32)


@dataclass(frozen=True)
class SBIOptions:
    colour_p: float = 0.3            # each of: RGB shift, hue/saturation/value, brightness/contrast
    rgb_shift: float = 20.0
    hsv_shift: float = 0.1
    brightness_contrast: float = 0.1
    downscale: tuple = (0.25, 0.5)   # blur by resampling to this share of the size and back...
    sharpen: tuple = (0.2, 0.5)      # ...or sharpen (unsharp mask strength); one of the two
    scale: float = 0.05              # source scaled by 1 +- this about the face...
    shift: float = 0.03              # ...and shifted by up to this share of the crop
    feather_px: tuple = (2.0, 12.0)  # Gaussian sigma of the mask's edge
    ratios: tuple = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # blend ratio drawn from these

    def options(self) -> dict:
        return asdict(self)


def _frame(kp: np.ndarray):
    """Eye centre, the downward vector eyes -> mouth, and the vector right eye -> left eye."""
    eyes = (kp[0] + kp[1]) / 2
    return eyes, kp[3] - eyes, kp[1] - kp[0]


def _hull_points(kp: np.ndarray, shape: str) -> np.ndarray:
    e, v, u = _frame(kp)
    if shape == "inner":  # brows, cheeks beside the nose, chin: no ears
        return np.array([kp[0] - 0.3 * v - 0.25 * u, kp[1] - 0.3 * v + 0.25 * u,
                         kp[3] + 0.45 * v, kp[3] + 0.2 * v - 0.55 * u, kp[3] + 0.2 * v + 0.55 * u])
    if shape == "lower":  # from the eyes down: the part most swaps replace
        return np.array([kp[0] - 0.1 * v - 0.3 * u, kp[1] - 0.1 * v + 0.3 * u, kp[4], kp[5],
                         kp[3] + 0.5 * v, kp[4] + 0.55 * v + 0.15 * u, kp[5] + 0.55 * v - 0.15 * u])
    # "full": ear to ear, forehead to chin
    return np.array([kp[4], kp[5], kp[0] - 0.35 * v, kp[1] - 0.35 * v, e - 0.5 * v,
                     kp[3] + 0.5 * v, kp[4] + 0.55 * v + 0.15 * u, kp[5] + 0.55 * v - 0.15 * u])


HULLS = ("full", "lower", "inner")


def _fill(points: np.ndarray, size: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return m


def face_region(keypoints: np.ndarray, size: int = 256) -> np.ndarray:
    """The area a pseudo-fake may change (uint8 0/1): the full hull grown by a fifth about its
    centre, so the mask's deformation and feathered edge fit inside it."""
    pts = _hull_points(np.asarray(keypoints, np.float64), "full")
    c = pts.mean(0)
    return _fill(c + 1.2 * (pts - c), size)


def make_mask(keypoints: np.ndarray, rng: np.random.Generator, options: SBIOptions = SBIOptions(),
              size: int = 256) -> np.ndarray:
    """A float32 blend mask in [0, 1]: a hull of the keypoints, deformed, feathered, times a
    blend ratio; zero outside `face_region`."""
    kp = np.asarray(keypoints, np.float64)
    pts = _hull_points(kp, HULLS[rng.integers(len(HULLS))])
    span = np.linalg.norm(_frame(kp)[1])
    pts = pts + rng.normal(0, 0.06 * span, pts.shape)  # move each corner a little
    m = _fill(pts, size).astype(np.float32)
    # Round the hull into a blob: shrink it to a coarse grid and back, then cut at a random level
    # (below 0.5 grows it, above shrinks it).
    small = max(8, int(size * rng.uniform(0.1, 0.3)))
    m = cv2.resize(cv2.resize(m, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                   interpolation=cv2.INTER_LINEAR)
    m = (m > rng.uniform(0.35, 0.65)).astype(np.float32)
    sigma = rng.uniform(*options.feather_px)
    m = cv2.GaussianBlur(m, (0, 0), sigma)
    m = np.clip(m / max(float(m.max()), 1e-6), 0, 1)  # a blurred small blob still peaks at 1
    m *= float(rng.choice(options.ratios))
    return m * face_region(kp, size)


def alter(img: np.ndarray, keypoints: np.ndarray, rng: np.random.Generator,
          options: SBIOptions = SBIOptions()) -> np.ndarray:
    """The altered copy of the face that is blended in: colour, then blur or sharpen, then a
    small scale and shift about the face."""
    o = options
    x = img.astype(np.float32)
    if rng.random() < o.colour_p:
        x = x + rng.uniform(-o.rgb_shift, o.rgb_shift, 3)
    if rng.random() < o.colour_p:
        hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-o.hsv_shift, o.hsv_shift) * 30) % 180
        hsv[..., 1:] *= 1 + rng.uniform(-o.hsv_shift, o.hsv_shift, 2)
        x = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if rng.random() < o.colour_p:
        b, c = rng.uniform(-o.brightness_contrast, o.brightness_contrast, 2)
        x = (x - 128) * (1 + c) + 128 + 255 * b
    x = np.clip(x, 0, 255).astype(np.uint8)
    h, w = x.shape[:2]
    if rng.random() < 0.5:
        f = rng.uniform(*o.downscale)
        small = cv2.resize(x, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        a = rng.uniform(*o.sharpen)
        soft = cv2.GaussianBlur(x, (0, 0), 1.0)
        x = cv2.addWeighted(x, 1 + a, soft, -a, 0)
    centre = np.asarray(keypoints, np.float64)[:4].mean(0)
    s = 1 + rng.uniform(-o.scale, o.scale)
    m = np.array([[s, 0, (1 - s) * centre[0]], [0, s, (1 - s) * centre[1]]])
    m[:, 2] += rng.uniform(-o.shift, o.shift, 2) * (w, h)
    return cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def self_blend(img: np.ndarray, keypoints: np.ndarray | None, rng: np.random.Generator,
               options: SBIOptions = SBIOptions()) -> tuple[np.ndarray, np.ndarray]:
    """A pseudo-fake of the aligned real crop `img` (uint8 RGB, square) and its blend mask.
    Pixels where the mask is 0 are `img`'s own, to the bit."""
    kp = TEMPLATE_KEYPOINTS * (img.shape[0] / 256) if keypoints is None else keypoints
    mask = make_mask(kp, rng, options, img.shape[0])
    source = alter(img, kp, rng, options)
    m = mask[..., None]
    out = np.rint(source * m + img * (1 - m)).astype(np.uint8)
    out[mask == 0] = img[mask == 0]
    return out, mask
