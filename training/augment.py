"""Training-time augmentations on uint8 RGB crops, each switchable.

The paper's set, with the semantics of the Keras ImageDataGenerator it used: rotation up to
+-15 degrees, zoom 0.8-1.2 per axis, edges filled by repeating the border pixel, one channel
shift of +-30 added to all channels, horizontal flip, brightness 0.8-1.2.

Added for what a scan sees, each applied with a probability: a tight cut (black beyond a random
box around the face, as a dataset's face crop or a face at the frame's edge gives), a face
smaller in its frame (the crop shrunk and enlarged back: a face `resample` x 170 px wide in the
frame, 170 px being the face box in the crop), a light Gaussian blur, sensor noise, and JPEG
re-compression at a random quality (the blocking and ringing of a video codec).

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
    cut_p: float = 0.0               # probability of a tight cut: black beyond a random box...
    cut_margin: tuple = (0.0, 0.2)   # ...this share of the side in from each edge
    resample_p: float = 0.0          # probability of shrinking and enlarging back...
    resample: tuple = (0.35, 1.0)    # ...to this share of the side
    noise_p: float = 0.0             # probability of Gaussian noise...
    noise_sigma: tuple = (2.0, 8.0)  # ...of this standard deviation (0-255 scale)

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
        if self.cut_p and rng.random() < self.cut_p:
            x0, y0, x1, y1 = (rng.uniform(*self.cut_margin, 4) * [w, h, w, h]).astype(int)
            cut = np.zeros_like(img)
            cut[y0:h - y1, x0:w - x1] = img[y0:h - y1, x0:w - x1]
            img = cut
        if self.blur_p and rng.random() < self.blur_p:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*self.blur_sigma))
        if self.resample_p and rng.random() < self.resample_p:
            f = rng.uniform(*self.resample)
            small = cv2.resize(img, (max(8, round(w * f)), max(8, round(h * f))),
                               interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if self.noise_p and rng.random() < self.noise_p:
            noisy = img + rng.normal(0, rng.uniform(*self.noise_sigma), img.shape)
            img = np.clip(noisy, 0, 255).astype(np.uint8)
        if self.jpeg_p and rng.random() < self.jpeg_p:
            q = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
        return img


def add_arguments(parser) -> None:
    """The augmentation options of `python -m training.train` (and of `from_arguments`)."""
    g = parser.add_argument_group("augmentation (the paper's, each switchable, plus JPEG and blur)")
    g.add_argument("--no-augment", action="store_true", help="switch all augmentation off")
    g.add_argument("--rotation", type=float, default=15.0, help="max rotation, degrees (0: off)")
    g.add_argument("--zoom", type=float, default=0.2, help="zoom range per axis (0: off)")
    g.add_argument("--brightness", type=float, default=0.2, help="brightness 1 +- this (0: off)")
    g.add_argument("--channel-shift", type=float, default=30.0, help="channel shift range (0: off)")
    g.add_argument("--no-hflip", action="store_true", help="no horizontal flips")
    g.add_argument("--jpeg-p", type=float, default=0.0, help="probability of a JPEG round trip")
    g.add_argument("--jpeg-quality", type=int, nargs=2, default=(40, 95), metavar=("LO", "HI"),
                   help="JPEG quality range for the round trip (default 40 95)")
    g.add_argument("--blur-p", type=float, default=0.0, help="probability of a Gaussian blur")
    g.add_argument("--blur-sigma", type=float, nargs=2, default=(0.3, 1.5), metavar=("LO", "HI"),
                   help="Gaussian blur sigma range, pixels (default 0.3 1.5)")
    g.add_argument("--cut-p", type=float, default=0.0,
                   help="probability of a tight cut (black beyond a random box, up to a fifth "
                        "of the side in from each edge)")
    g.add_argument("--resample-p", type=float, default=0.0,
                   help="probability of shrinking the crop to 35-100%% of its side and back "
                        "(a face 60-170 px wide in its frame)")
    g.add_argument("--noise-p", type=float, default=0.0,
                   help="probability of Gaussian noise (sigma 2-8)")


def from_arguments(a) -> Augment | None:
    """The Augment those options describe (None: --no-augment)."""
    if a.no_augment:
        return None
    return Augment(rotation_deg=a.rotation, zoom=a.zoom, brightness=a.brightness,
                   channel_shift=a.channel_shift, hflip=not a.no_hflip, jpeg_p=a.jpeg_p,
                   jpeg_quality=tuple(a.jpeg_quality), blur_p=a.blur_p,
                   blur_sigma=tuple(a.blur_sigma), cut_p=a.cut_p, resample_p=a.resample_p,
                   noise_p=a.noise_p)
