"""Regenerate the sample clips in this folder from the bundled public-domain photos.

    python sample_videos/make_samples.py            # writes sample_videos/*.mp4

Every clip is H.264 (libx264 through PyAV), 480x360, 25 fps, 3 s, made only from
`screener/assets/` (public domain: see its README). Output is deterministic for a given
PyAV/libx264 build. What each clip is, honestly, is in README.md beside this script.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from screener import synth
from screener.align import similarity
from screener.detect import FaceDetector

HERE = Path(__file__).resolve().parent
W, H, FPS, N_FRAMES = 480, 360, 25, 75
FACE_PX = 105              # face box width in the frame
PORTRAIT = 2.2             # the pasted portrait is this many face widths wide
ENCODE = {"crf": "20", "preset": "slow"}   # sharp faces (MesoNet reads fine texture), still small


def face_of(detector: FaceDetector, rgb: np.ndarray):
    faces = detector.detect(rgb)
    if not faces:
        sys.exit("no face found in a bundled photo: the detector or the photo changed")
    return faces[0]


def portrait(rgb: np.ndarray, box) -> np.ndarray:
    """A square cut PORTRAIT face widths wide, centred on the face box (edges replicated)."""
    x, y, w, h = box
    side = int(round(w * PORTRAIT))
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    padded = cv2.copyMakeBorder(rgb, side, side, side, side, cv2.BORDER_REPLICATE)
    return padded[y0 + side:y0 + 2 * side, x0 + side:x0 + 2 * side].copy()


def face_swap(target: np.ndarray, t_face, source: np.ndarray, s_face) -> np.ndarray:
    """A crude face swap: the source's eyes-nose-mouth region warped onto the target's
    keypoints (similarity transform) and blended with OpenCV's Poisson seamlessClone."""
    m = similarity(s_face.keypoints[:4], t_face.keypoints[:4])
    warped = cv2.warpAffine(source, m, (target.shape[1], target.shape[0]),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    eyes = t_face.keypoints[:2]
    mouth = t_face.keypoints[3]
    centre = (eyes.mean(0) + mouth) / 2
    eye_dist = float(np.linalg.norm(eyes[1] - eyes[0]))
    axes = (int(eye_dist * 1.05), int(np.linalg.norm(mouth - eyes.mean(0)) * 1.25))
    angle = float(np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1])))
    mask = np.zeros(target.shape[:2], np.uint8)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 255, -1)
    return cv2.seamlessClone(warped, target, mask, (int(centre[0]), int(centre[1])),
                             cv2.NORMAL_CLONE)


def clip(path: Path, placed: list[tuple[np.ndarray, int, int]], seed: int, drift_px: int = 1):
    """Portraits (image, x, y) pasted on a soft background, drifting right `drift_px` a frame."""
    bg = synth.background(W, H, seed)

    def frames():
        for i in range(N_FRAMES):
            frame = bg.copy()
            for img, x, y in placed:
                synth.paste(frame, img, x + i * drift_px, y, img.shape[1])
            yield frame
    synth.write_video(path, frames(), fps=FPS, options=ENCODE)
    print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")


def main(out: Path = HERE) -> None:
    detector = FaceDetector()
    collins, hopper = synth.photo("collins"), synth.photo("hopper")
    fc, fh = face_of(detector, collins), face_of(detector, hopper)
    swapped = face_swap(collins, fc, hopper, fh)

    def sized(img, face, face_px=FACE_PX):
        p = portrait(img, face.box)
        side = int(round(face_px * PORTRAIT))
        return cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA)

    side = int(round(FACE_PX * PORTRAIT))
    x, y = (W - side) // 2 - 37, (H - side) // 2
    clip(out / "collins.mp4", [(sized(collins, fc), x, y)], seed=1)
    clip(out / "hopper.mp4", [(sized(hopper, fh), x, y)], seed=2)
    clip(out / "collins_hopper_swap.mp4", [(sized(swapped, fc), x, y)], seed=3)
    small = int(round(80 * PORTRAIT))
    clip(out / "two_people.mp4", [(sized(hopper, fh, 80), 20, 60),
                                  (sized(collins, fc, 80), W - small - 80, 80)], seed=4)
    clip(out / "no_face.mp4", [], seed=5)
    detector.close()


if __name__ == "__main__":
    main()
