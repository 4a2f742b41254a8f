"""Synthetic H.264 clips with faces at known places, for tests, sample_videos/ and the benchmark.

Faces come from the public-domain photos in `screener/assets/` (see its README). Every clip is
made by PyAV with libx264, so the fixtures are real video files that OpenCV must really decode.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

ASSETS = Path(__file__).parent / "assets"
FACE_PHOTOS = {"collins": "astronaut_collins.jpg", "hopper": "grace_hopper.jpg"}


# Where the face is in each photo, measured once with FaceDetector: box (x, y, w, h) and the
# keypoints (right eye, left eye, nose tip, mouth), in photo pixels.
FACE_TRUTH = {
    "collins": ((176, 82, 95, 95), [[202, 105], [246, 110], [221, 128], [220, 149]]),
    "hopper": ((171, 147, 194, 194), [[222, 195], [308, 185], [268, 226], [273, 274]]),
}
# A third look for tests of several people: Hopper mirrored and in grey (another face to a
# descriptor; the detector still finds it).
VARIANTS = {"hopper_grey": "hopper"}
_W = {"hopper": 512}  # photo widths, for mirroring the truth
_box, _kp = FACE_TRUTH["hopper"]
FACE_TRUTH["hopper_grey"] = (
    (_W["hopper"] - _box[0] - _box[2], _box[1], _box[2], _box[3]),
    [[_W["hopper"] - x, y] for x, y in (_kp[1], _kp[0], _kp[2], _kp[3])])
# The square portrait cut around each face: 2.2 face widths, centred on the box.
PORTRAIT_SCALE = 2.2


def photo(name: str = "collins") -> np.ndarray:
    """A bundled public-domain photo with a face (or a VARIANTS look of one), as RGB uint8."""
    if name in VARIANTS:
        grey = cv2.cvtColor(np.ascontiguousarray(photo(VARIANTS[name])[:, ::-1]), cv2.COLOR_RGB2GRAY)
        return np.repeat(grey[:, :, None], 3, axis=2)
    bgr = cv2.imread(str(ASSETS / FACE_PHOTOS[name]), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _portrait_box(name: str) -> tuple[int, int, int]:
    (x, y, w, h), _ = FACE_TRUTH[name]
    side = round(w * PORTRAIT_SCALE)
    return round(x + w / 2 - side / 2), round(y + h / 2 - side / 2), side


def portrait(name: str = "collins") -> np.ndarray:
    """A square head-and-shoulders cut of a photo, the face in the middle."""
    x, y, side = _portrait_box(name)
    img = photo(name)
    return cv2.copyMakeBorder(img, side, side, side, side, cv2.BORDER_REPLICATE)[
        y + side:y + 2 * side, x + side:x + 2 * side]


def face_truth(p: "Placement") -> tuple[tuple[float, float, float, float], np.ndarray]:
    """The face box and 4 keypoints (right eye, left eye, nose, mouth) of a placed portrait,
    in frame pixels (first frame, before any drift)."""
    (bx, by, bw, bh), kp = FACE_TRUTH[p.name]
    x, y, side = _portrait_box(p.name)
    s = p.width / side

    def to_frame(pts):
        return (np.asarray(pts, np.float64) - [x, y]) * s + [p.x, p.y]
    (fx, fy), = to_frame([[bx, by]])
    return (fx, fy, bw * s, bh * s), to_frame(kp)


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, textured RGB background (not flat: flat frames compress to nothing)."""
    rng = np.random.default_rng(seed)
    # Soft, muted blobs like an out-of-focus room: saturated noise makes BlazeFace see faces.
    small = rng.normal(120, 25, size=(4, 6, 1)) + rng.normal(0, 12, size=(4, 6, 3))
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 4, size=img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


@dataclass
class Placement:
    """A portrait in the frame: its top-left corner, and the width of the face box in pixels
    (the portrait itself is PORTRAIT_SCALE times wider). `path(i)`, where given, is the corner
    at frame i, or None while the person is out of the picture."""
    name: str
    x: int
    y: int
    face_px: int
    path: Callable[[int], tuple[int, int] | None] | None = None

    def at(self, i: int, drift_px: int = 0) -> tuple[int, int] | None:
        return self.path(i) if self.path else (self.x + i * drift_px, self.y)

    @property
    def width(self) -> int:
        return round(self.face_px * PORTRAIT_SCALE)


def paste(frame: np.ndarray, img: np.ndarray, x: int, y: int, width: int) -> np.ndarray:
    """Paste `img` resized to `width` (aspect kept) with its top-left at (x, y), clipped."""
    h = max(1, round(img.shape[0] * width / img.shape[1]))
    interp = cv2.INTER_AREA if width < img.shape[1] else cv2.INTER_CUBIC
    small = cv2.resize(img, (width, h), interpolation=interp)
    H, W = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + width, W), min(y + h, H)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = small[y0 - y:y1 - y, x0 - x:x1 - x]
    return frame


def write_video(path, frames, fps: float = 25, codec: str = "libx264", pix_fmt: str = "yuv420p",
                options: dict | None = None, container_options: dict | None = None) -> Path:
    """Encode an iterable of RGB uint8 frames (all the same size) to `path` with PyAV."""
    import av

    path = Path(path)
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = None
        for rgb in frames:
            if stream is None:
                stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = rgb.shape[:2]
                stream.pix_fmt = pix_fmt
                if codec == "libx264":
                    stream.options = {"preset": "ultrafast", "crf": "20", **(options or {})}
                elif options:
                    stream.options = options
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
    return path


def face_clip(path, width: int = 640, height: int = 360, n_frames: int = 50, fps: float = 25,
              faces: list[Placement] | tuple = (), seed: int = 0, drift_px: int = 0,
              cut_at: int | None = None, **kw) -> Path:
    """A clip of `n_frames` with the given photos pasted on a textured background.

    `drift_px` moves every face right by that many pixels per frame (still a known position);
    a face with a `path` goes where it says. From frame `cut_at` on, the background is another
    (a cut to another shot). Faces are pasted in list order: a later one hides an earlier one.
    """
    backgrounds = [background(width, height, seed), background(width, height, seed + 1)]
    photos = {p.name: portrait(p.name) for p in faces}

    def frames():
        for i in range(n_frames):
            frame = backgrounds[cut_at is not None and i >= cut_at].copy()
            for p in faces:
                where = p.at(i, drift_px)
                if where is not None:
                    paste(frame, photos[p.name], where[0], where[1], p.width)
            yield frame

    return write_video(path, frames(), fps=fps, **kw)


def set_rotation(path, degrees: int) -> Path:
    """Mark an MP4's video track as rotated (the display matrix in its `tkhd` box), as phones do.

    PyAV cannot write the display matrix, so the file's version-0 `tkhd` is patched in place.
    """
    rot = {0: (1, 0, 0, 1), 90: (0, 1, -1, 0), 180: (-1, 0, 0, -1), 270: (0, -1, 1, 0)}[degrees % 360]
    path = Path(path)
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    if at < 0 or data[at + 4] != 0:
        raise ValueError(f"{path}: no version-0 tkhd box to patch")
    a, b, c, d = rot
    matrix = [a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30]
    import struct
    data[at + 4 + 40:at + 4 + 76] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))
    return path
