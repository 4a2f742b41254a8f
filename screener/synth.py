"""Synthetic H.264 clips with faces at known places, for tests, sample_videos/ and the benchmark.

Faces come from the public-domain photos in `screener/assets/` (see its README). Every clip is
made by PyAV with libx264, so the fixtures are real video files that OpenCV must really decode.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

ASSETS = Path(__file__).parent / "assets"
FACE_PHOTOS = {"collins": "astronaut_collins.jpg", "hopper": "grace_hopper.jpg"}


def photo(name: str = "collins") -> np.ndarray:
    """A bundled public-domain photo with a face, as RGB uint8."""
    bgr = cv2.imread(str(ASSETS / FACE_PHOTOS[name]), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, textured RGB background (not flat: flat frames compress to nothing)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, size=(max(2, height // 40), max(2, width // 40), 3), np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, size=img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


@dataclass
class Placement:
    """Where a photo goes in the frame: its top-left corner and its width in pixels."""
    name: str
    x: int
    y: int
    width: int


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
                options: dict | None = None, rotate_deg: int | None = None) -> Path:
    """Encode an iterable of RGB uint8 frames (all the same size) to `path` with PyAV."""
    import av  # test/bench dependency only

    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = None
        for rgb in frames:
            if stream is None:
                stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = rgb.shape[:2]
                stream.pix_fmt = pix_fmt
                stream.options = {"preset": "ultrafast", "crf": "20", **(options or {})}
                if rotate_deg is not None:
                    stream.metadata["rotate"] = str(rotate_deg)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
    return path


def face_clip(path, width: int = 640, height: int = 360, n_frames: int = 50, fps: float = 25,
              faces: list[Placement] | tuple = (), seed: int = 0, drift_px: int = 0, **kw) -> Path:
    """A clip of `n_frames` with the given photos pasted on a textured background.

    `drift_px` moves every face right by that many pixels per frame (still a known position).
    """
    bg = background(width, height, seed)
    photos = {p.name: photo(p.name) for p in faces}

    def frames():
        for i in range(n_frames):
            frame = bg.copy()
            for p in faces:
                paste(frame, photos[p.name], p.x + i * drift_px, p.y, p.width)
            yield frame

    return write_video(path, frames(), fps=fps, **kw)
