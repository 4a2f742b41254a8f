"""Image datasets for training and evaluation: `<root>/<split>/<class folder>/*.{jpg,png,...}`.

Labels are stated outright: the fake folder (default `df`) is 1, the real folder (default `real`)
is 0, whatever their alphabetical order. Images are streamed from disk a batch at a time (decoded
in worker threads), never loaded whole; any size and mode (RGB, grayscale, palette, CMYK, RGBA)
is read and resized to the model's 256x256. A file that cannot be decoded is skipped, counted
and logged once as a warning.

Resizing: `nearest` is what Keras' flow_from_directory did when the published weights were
trained (so it reproduces their figures on the raw crops); `area` is the scan's own resize
(`screener.align.resize_to_model`). Aligned crops are already 256x256 and are not resized.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from screener.errors import ImageError, ScreenerError
from screener.images import IMAGE_EXTENSIONS, read_rgb
from screener.arch import INPUT_SIZE

log = logging.getLogger(__name__)

RESIZE_MODES = ("nearest", "area")
FAKE, REAL = 1, 0
# `<video>_<frame>.<ext>`: the video id is everything before the last underscore + digits.
_VIDEO_NAME = re.compile(r"^(?P<video>.+)_(?P<frame>\d+)$")
# `screener extract` names: `<stem>-<8 hex>_<frame>[_<face>]` (its ids hold no underscore), so
# `vid-0a1b2c3d_000012_1` (an --all-faces crop) is video `vid-0a1b2c3d`, not `..._000012`.
_EXTRACT_NAME = re.compile(r"^(?P<video>[^_]+-[0-9a-f]{8})_(?P<frame>\d+)(?:_p?\d+)?$")


class DatasetError(ScreenerError):
    """A dataset folder is missing, empty or laid out wrongly. The message says which."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int          # 1 = fake, 0 = real
    video: str | None   # video id from `<video>_<frame>.<ext>`, else None
    # A group that spans classes (a person's real video and the fakes made from it), where the
    # dataset says so (training.sources); otherwise the group is the video within its class.
    group_key: str | None = None
    source: str = ""    # the training source it came from (training.sources)

    @property
    def group(self) -> str:
        """The unit that must not straddle a split: the group if given, the video if known,
        else the file."""
        if self.group_key is not None:
            return self.group_key
        return f"{self.label}:{self.video}" if self.video is not None else str(self.path)


def video_id(path: Path) -> str | None:
    m = _EXTRACT_NAME.match(path.stem) or _VIDEO_NAME.match(path.stem)
    return m.group("video") if m else None


def list_split(root: str | Path, split: str, fake: str = "df", real: str = "real") -> list[Sample]:
    """All images of `<root>/<split>/{fake,real}`, sorted by path. Raises DatasetError."""
    base = Path(root) / split
    if not base.is_dir():
        raise DatasetError(f"split folder not found: {base} (expected {base}/{fake} and "
                           f"{base}/{real})")
    samples = []
    for folder, label in ((fake, FAKE), (real, REAL)):
        d = base / folder
        if not d.is_dir():
            raise DatasetError(f"class folder not found: {d} (class folders are set with "
                               f"--fake-dir / --real-dir; found {sorted(p.name for p in base.iterdir())})")
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise DatasetError(f"class folder {d} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        samples += [Sample(p, label, video_id(p)) for p in files]
    return samples


HOLDOUT_BY = ("auto", "video", "similar", "block")


def resolve_holdout_by(by: str, samples: list[Sample]) -> str:
    """The carve `by` names for these samples: `auto` is video if every name has one, else similar."""
    if by not in HOLDOUT_BY:
        raise ValueError(f"holdout grouping must be one of {', '.join(HOLDOUT_BY)}")
    if by == "auto":
        return "video" if all(s.video is not None for s in samples) else "similar"
    return by


def holdout_split(samples: list[Sample], fraction: float, seed: int, by: str = "auto",
                  block: int = 50) -> tuple[list[Sample], list[Sample]]:
    """Carve a model-selection split from training samples, per class, by group.

    `video`: whole videos (from the file names) go to one side. `similar` (for names without a
    video id, like the DF train split's `df00000.jpg`): groups of alike images, see
    `training.groups`. `block`: runs of `block` consecutive files (what the shipped model used;
    a video can straddle two runs). `auto`: `video` when every name carries a video id, else
    `similar`. A group larger than half the holdout's share of its class stays in training, so
    one giant group cannot swallow the holdout.
    """
    if not 0 < fraction < 1:
        raise ValueError("holdout fraction must be between 0 and 1")
    by = resolve_holdout_by(by, samples)
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for label in (FAKE, REAL):
        cls = [s for s in samples if s.label == label]
        if by == "similar":
            from .groups import describe, near_duplicate_groups
            keys = [str(g) for g in near_duplicate_groups(describe([s.path for s in cls]))]
        elif by == "video":
            keys = [s.video if s.video is not None else str(s.path) for s in cls]
        else:
            keys = [str(i // block) for i in range(len(cls))]
        groups: dict[str, list[Sample]] = {}
        for k, s in zip(keys, cls):
            if s.video is None:
                s = replace(s, video=f"~{by}-{k}")
            groups.setdefault(k, []).append(s)
        order = sorted(groups)
        rng.shuffle(order)
        target, n_held = fraction * len(cls), 0
        for k in order:
            g = groups[k]
            take = n_held < target and (by != "similar" or len(g) <= max(1.0, target / 2))
            (held if take else keep).extend(g)
            n_held += len(g) if take else 0
    return keep, held


def class_weights(samples: list[Sample]) -> dict[int, float]:
    """Weights that make both classes count equally: n / (2 * n_class)."""
    counts = Counter(s.label for s in samples)
    n = len(samples)
    return {c: n / (2 * counts[c]) if counts[c] else 0.0 for c in (FAKE, REAL)}


def resize(rgb: np.ndarray, mode: str) -> np.ndarray:
    """Resize an RGB uint8 image to the model's 256x256 (a no-op when it already is)."""
    if rgb.shape[:2] == (INPUT_SIZE, INPUT_SIZE):
        return rgb
    if mode == "nearest":
        return np.asarray(Image.fromarray(rgb).resize((INPUT_SIZE, INPUT_SIZE), Image.NEAREST))
    if mode == "area":
        from screener.align import resize_to_model  # the scan's resize: same pixels at scan time
        return resize_to_model(rgb)
    raise ValueError(f"unknown resize mode {mode!r}; choose from {', '.join(RESIZE_MODES)}")


@dataclass
class LoadStats:
    """What the loader skipped. Shared by the worker threads, hence the lock."""
    skipped: dict = field(default_factory=dict)  # path -> reason
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def skip(self, path: Path, reason: str) -> None:
        with self._lock:
            if str(path) not in self.skipped:
                self.skipped[str(path)] = reason
                log.warning("skipping unreadable image (%d so far): %s", len(self.skipped), reason)


def load_image(path: Path, resize_mode: str = "nearest") -> np.ndarray:
    return resize(read_rgb(path), resize_mode)


class BatchStream:
    """Batches of (uint8 images, float32 labels, float32 weights), decoded in threads.

    Iterating yields one epoch. Order is shuffled per epoch from (seed, epoch) when `shuffle`,
    so a resumed run sees the same order it would have seen. Unreadable images are dropped
    from their batch and recorded in `stats`; `kept` lists the samples actually yielded, in
    order (evaluation uses it to line scores up with files).
    """

    def __init__(self, samples: list[Sample], batch_size: int = 32, resize_mode: str = "nearest",
                 shuffle: bool = False, seed: int = 0, augment=None, weights: dict | None = None,
                 workers: int = 2):
        if not samples:
            raise DatasetError("no images to load")
        self.samples = list(samples)
        self.batch_size = batch_size
        self.resize_mode = resize_mode
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.weights = weights or {FAKE: 1.0, REAL: 1.0}
        self.workers = workers
        self.stats = LoadStats()
        self.epoch = 0
        self.kept: list[Sample] = []

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)

    def _one(self, i_sample):
        i, s = i_sample
        try:
            img = load_image(s.path, self.resize_mode)
        except ImageError as e:
            self.stats.skip(s.path, str(e))
            return None
        if self.augment is not None:
            # One generator per (seed, epoch, image): reproducible whatever thread runs it.
            img = self.augment(img, np.random.default_rng((self.seed, self.epoch, i)))
        return img

    def __iter__(self):
        order = np.arange(len(self.samples))
        if self.shuffle:
            np.random.default_rng((self.seed, self.epoch)).shuffle(order)
        self.kept = []
        with ThreadPoolExecutor(self.workers) as pool:
            chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            # Decode the next batch while the caller works on this one.
            pending = pool.map(self._one, [(int(i), self.samples[i]) for i in chunks[0]]) if chunks else None
            for k in range(len(chunks)):
                imgs = list(pending)
                if k + 1 < len(chunks):
                    pending = pool.map(self._one, [(int(i), self.samples[i]) for i in chunks[k + 1]])
                keep = [j for j, im in enumerate(imgs) if im is not None]
                if not keep:
                    continue
                batch = [self.samples[chunks[k][j]] for j in keep]
                self.kept.extend(batch)
                x = np.stack([imgs[j] for j in keep])
                y = np.array([s.label for s in batch], np.float32)
                w = np.array([self.weights[s.label] for s in batch], np.float32)
                yield x, y, w
        self.epoch += 1
