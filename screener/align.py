"""Align each detected face to the 256x256 crop the model sees.

A least-squares similarity transform (rotation, uniform scale, translation) from the eyes, nose
tip and mouth centre (`detect`'s keypoints) to `TEMPLATE`, which reproduces the MesoNet
dataset's framing (measured once on 400 crops per class of mesonet-df/train, a script not kept:
eyes 0.31 of the width apart at 0.35 of the height; the real class is framed tighter than the
fake one, and the template sits between them so both classes end up framed alike).
"""
from __future__ import annotations

import cv2
import numpy as np

from .detect import Face, FaceDetector, default_detector

CROP_PX = 256
# The keypoints the crop is aligned on (detect.KEYPOINT_NAMES: the eyes, nose tip and mouth).
ALIGN_KEYPOINTS = (0, 1, 2, 3)
# Where those four keypoints land in the crop, as fractions of its side.
TEMPLATE = np.array([[0.346, 0.352], [0.654, 0.352], [0.500, 0.515], [0.500, 0.683]])

# A face near the frame edge has part of its crop outside the frame. That part is filled with
# black, never with mirrored image content (a mirrored half-face is a second set of eyes and
# mouth). Above this share of the crop outside the frame the face is cut off: it is counted,
# like a face too small, and not scored (see docs for the measurement behind the value).
MAX_OUTSIDE = 0.3


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2x3) taking points `src` to `dst` (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / s.var(0).sum()
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - scale * rot @ ms
    return m


def to_template(keypoints: np.ndarray, size: int = CROP_PX) -> np.ndarray:
    """The similarity transform (2x3) taking a face's frame pixels to its crop's pixels."""
    return similarity(np.asarray(keypoints, np.float64)[list(ALIGN_KEYPOINTS)], TEMPLATE * size)


def outside_share(frame_shape: tuple, keypoints: np.ndarray, size: int = CROP_PX,
                  grid: int = 32) -> float:
    """The share of the face's crop that lies outside the frame (0: all inside), measured on
    a grid x grid sample of the crop's pixel centres."""
    inv = cv2.invertAffineTransform(to_template(keypoints, size))
    c = (np.arange(grid) + 0.5) * size / grid
    xs, ys = np.meshgrid(c, c)
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(grid * grid)], 1) @ inv.T
    h, w = frame_shape[:2]
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    return float(1 - inside.mean())


def align(rgb: np.ndarray, keypoints: np.ndarray, size: int = CROP_PX) -> np.ndarray:
    """Warp the face with these keypoints onto the template: a (size, size, 3) uint8 crop.
    What falls outside the frame is black (see MAX_OUTSIDE)."""
    dst = TEMPLATE * size
    src = np.asarray(keypoints, np.float64)[list(ALIGN_KEYPOINTS)]
    m = similarity(src, dst)
    scale = float(np.hypot(m[0, 0], m[0, 1]))
    image = rgb
    # Shrinking more than 2x with a bilinear warp aliases (it samples, it does not average):
    # cut out the face's region and shrink it with INTER_AREA first, then warp the rest.
    if scale < 0.5:
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]]) @ inv.T
        x0, y0 = np.floor(corners.min(0)).astype(int) - 2
        x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
        H, W = rgb.shape[:2]
        x0c, y0c, x1c, y1c = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        if x1c > x0c and y1c > y0c:
            region = rgb[y0c:y1c, x0c:x1c]
            f = 2 * scale  # shrink to twice the final size, the warp does the last 2x
            region = cv2.resize(region, (max(1, round(region.shape[1] * f)),
                                         max(1, round(region.shape[0] * f))),
                                 interpolation=cv2.INTER_AREA)
            fx = region.shape[1] / (x1c - x0c)
            fy = region.shape[0] / (y1c - y0c)
            src = (src - [x0c, y0c]) * [fx, fy]
            m = similarity(src, dst)
            image = region
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def resize_to_model(rgb: np.ndarray, size: int = CROP_PX) -> np.ndarray:
    """The one resize for images that are not aligned (a crop with no detected face)."""
    if rgb.shape[:2] == (size, size):
        return rgb
    interp = cv2.INTER_AREA if min(rgb.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp)


def align_image(rgb: np.ndarray, detector: FaceDetector | None = None,
                border: float = 0.25) -> Face | None:
    """The largest face of a still image (a dataset crop or a photo), aligned: a Face whose
    keypoints are in `rgb`'s pixels and whose `crop` is set; None if no face is found.

    A tight face crop can defeat the detector (it was trained on faces with context), so when
    nothing is found the image is searched again with a mirrored border of `border` of its
    size. The border only helps detection: the crop is cut from the image itself.
    """
    detector = detector or default_detector()
    faces = detector.detect(rgb, "crop") or detector.detect(rgb, "largest")
    if not faces and border:
        h, w = rgb.shape[:2]
        py, px = int(h * border), int(w * border)
        padded = cv2.copyMakeBorder(rgb, py, py, px, px, cv2.BORDER_REFLECT_101)
        faces = [Face((f.box[0] - px, f.box[1] - py, f.box[2], f.box[3]), f.keypoints - [px, py],
                      f.score) for f in detector.detect(padded, "largest")]
    if not faces:
        return None
    face = faces[0]
    face.crop = align(rgb, face.keypoints)
    return face
