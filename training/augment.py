"""Training-time augmentations on uint8 RGB crops, each switchable.

The paper's set, with the semantics of the Keras ImageDataGenerator it used: rotation up to
+-15 degrees, zoom 0.8-1.2 per axis, edges filled by repeating the border pixel, one channel
shift of +-30 added to all channels, horizontal flip, brightness 0.8-1.2. Added because the
scan sees re-encoded video: JPEG re-compression at a random quality and a light Gaussian blur,
each applied with a probability.

An `Augment` is called with an image and a numpy Generator, so results depend only on the
generator's seed (the data loader seeds one per image and epoch).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Augment:
    rotation_deg: float = 15.0
    zoom: float = 0.2
    brightness: float = 0.2          # factor drawn from [1 - b, 1 + b]
    channel_shift: float = 30.0
    hflip: bool = True
    jpeg_p: float = 0.0              # probability of a JPEG round trip
    jpeg_quality: tuple = (40, 95)
    blur_p: float = 0.0              # probability of a Gaussian blur
    blur_sigma: tuple = (0.3, 1.5)

    def options(self) -> dict:
        return asdict(self)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        if self.rotation_deg or self.zoom:
            angle = rng.uniform(-self.rotation_deg, self.rotation_deg)
            zx, zy = rng.uniform(1 - self.zoom, 1 + self.zoom, size=2)
            # Rotation about the centre, then a scale per axis (a symmetric range, as Keras).
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            m[:, :2] = m[:, :2] @ np.diag([1 / zx, 1 / zy])
            m[:, 2] += np.array([w / 2, h / 2]) - m[:, :2] @ np.array([w / 2, h / 2])
            img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        x = img.astype(np.float32)
        if self.channel_shift:
            x = np.clip(x + rng.uniform(-self.channel_shift, self.channel_shift), x.min(), x.max())
        if self.hflip and rng.random() < 0.5:
            x = x[:, ::-1]
        if self.brightness:
            x = x * rng.uniform(1 - self.brightness, 1 + self.brightness)
        img = np.ascontiguousarray(np.clip(x, 0, 255).astype(np.uint8))
        if self.blur_p and rng.random() < self.blur_p:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*self.blur_sigma))
        if self.jpeg_p and rng.random() < self.jpeg_p:
            q = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
        return img
