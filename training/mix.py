"""Batches mixed from several sources, balanced by source and class, with pseudo-fakes.

Each image of a batch picks a source by its weight, then a class with equal odds, then an image
of that class at random. A fake slot is a self-blended image (training.sbi) made from one of the
source's reals with probability `sbi_share` (always, for a source without fakes). Everything an
image goes through (which image, the blend, the augmentation) is drawn from a generator seeded
by (seed, epoch, step, slot): a resumed run sees what it would have seen.

Images are decoded once into a uint8 array kept on disk (`Pool`, a memmap under the cache
folder, reused by every run over the same files), so an epoch costs no image decoding.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from screener.arch import INPUT_SIZE

from . import sbi
from .data import FAKE, REAL, DatasetError, Sample, load_image

SHAPE = (INPUT_SIZE, INPUT_SIZE, 3)


class Pool:
    """The decoded images of a list of samples (uint8, N x 256 x 256 x 3), their labels and
    keypoints (N x 6 x 2, NaN where unknown). Unreadable images are left out."""

    def __init__(self, samples: list[Sample], cache_dir: Path, keypoints: dict | None = None,
                 workers: int = 2, resize_mode: str = "area"):
        key = hashlib.sha1("\n".join([resize_mode] + [str(s.path) for s in samples]).encode())
        path = Path(cache_dir) / f"pool-{key.hexdigest()[:16]}.u8"
        done = path.with_suffix(".json")
        if not done.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            arr = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), "w+", np.uint8,
                                            (len(samples),) + SHAPE)

            def one(i):
                try:
                    arr[i] = load_image(samples[i].path, resize_mode)
                    return True
                except Exception:  # unreadable: left out, listed in the index
                    return False
            with ThreadPoolExecutor(workers) as ex:
                ok = list(ex.map(one, range(len(samples))))
            arr.flush()
            del arr
            os.replace(path.with_suffix(".tmp.npy"), path)
            done.write_text(json.dumps({"ok": ok, "files": [str(s.path) for s in samples]}))
        ok = np.array(json.loads(done.read_text())["ok"], bool)
        self.images = np.load(path, mmap_mode="r")
        self.rows = np.flatnonzero(ok)
        self.samples = [samples[i] for i in self.rows]
        self.labels = np.array([s.label for s in self.samples], np.int8)
        kp = keypoints or {}
        self.keypoints = np.stack([kp.get(s.path, np.full((6, 2), np.nan, np.float32))
                                   for s in self.samples]) if self.samples else np.zeros((0, 6, 2))
        self.by_class = {c: np.flatnonzero(self.labels == c) for c in (FAKE, REAL)}

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, k: int) -> np.ndarray:
        return np.array(self.images[self.rows[k]])

    def kp(self, k: int) -> np.ndarray | None:
        v = self.keypoints[k]
        return None if np.isnan(v).any() else v


@dataclass
class Slot:
    pool: int
    index: int
    sbi: bool    # make a pseudo-fake of this real image


class MixedStream:
    """Training batches (uint8 images, float32 labels, float32 weights of 1) from pools."""

    def __init__(self, pools: list[Pool], weights: list[float], batch_size: int = 32,
                 sbi_share: float = 0.0, sbi_options: sbi.SBIOptions = sbi.SBIOptions(),
                 augment=None, seed: int = 0, workers: int = 2):
        if not pools or len(pools) != len(weights):
            raise ValueError("one weight per pool")
        if not 0 <= sbi_share <= 1:
            raise ValueError("the pseudo-fake share must be between 0 and 1")
        for p in pools:
            if not len(p.by_class[REAL]) or (not len(p.by_class[FAKE]) and not sbi_share):
                raise ValueError("every source needs real images, and fakes unless pseudo-fakes "
                                 "are on")
        self.pools, self.batch_size, self.seed, self.workers = pools, batch_size, seed, workers
        self.p = np.asarray(weights, float) / np.sum(weights)
        self.sbi_share, self.sbi_options, self.augment = sbi_share, sbi_options, augment

    def slots(self, epoch: int, step: int) -> list[Slot]:
        rng = np.random.default_rng((self.seed, epoch, step))
        out = []
        for k in rng.choice(len(self.pools), self.batch_size, p=self.p):
            pool = self.pools[k]
            fake = rng.random() < 0.5
            blend = fake and (rng.random() < self.sbi_share or not len(pool.by_class[FAKE]))
            members = pool.by_class[FAKE if fake and not blend else REAL]
            out.append(Slot(int(k), int(members[rng.integers(len(members))]), bool(blend)))
        return out

    def make(self, slot: Slot, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        pool = self.pools[slot.pool]
        img = pool.image(slot.index)
        label = int(pool.labels[slot.index])
        if slot.sbi:
            img, _ = sbi.self_blend(img, pool.kp(slot.index), rng, self.sbi_options)
            label = FAKE
        if self.augment is not None:
            img = self.augment(img, rng)
        return img, label

    def _batch(self, epoch: int, step: int):
        slots = self.slots(epoch, step)
        made = [self.make(s, np.random.default_rng((self.seed, epoch, step, i, 1)))
                for i, s in enumerate(slots)]
        x = np.stack([m[0] for m in made])
        y = np.array([m[1] for m in made], np.float32)
        return x, y, np.ones(len(y), np.float32)

    def epoch(self, epoch: int, steps: int):
        """`steps` batches; the next is made in worker threads while the caller trains."""
        with ThreadPoolExecutor(self.workers) as ex:
            pending = [ex.submit(self._batch, epoch, s) for s in range(min(2, steps))]
            for s in range(steps):
                batch = pending.pop(0).result()
                if s + 2 < steps:
                    pending.append(ex.submit(self._batch, epoch, s + 2))
                yield batch


def pseudo_fake_set(pool: Pool, limit: int, seed: int,
                    options: sbi.SBIOptions = sbi.SBIOptions()) -> tuple[np.ndarray, np.ndarray]:
    """A fixed evaluation set: up to `limit` reals of the pool and a pseudo-fake of each
    (labels 0 and 1), the same for every run with this seed."""
    reals = pool.by_class[REAL]
    pick = np.sort(np.random.default_rng(seed).permutation(reals)[:limit])
    x, y = [], []
    for k in pick:
        img = pool.image(int(k))
        fake, _ = sbi.self_blend(img, pool.kp(int(k)), np.random.default_rng((seed, int(k))), options)
        x += [img, fake]
        y += [REAL, FAKE]
    return np.stack(x), np.array(y, np.float32)


def fixed_set(pool: Pool, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` images of the pool, balanced by class where it can be."""
    rng = np.random.default_rng(seed)
    pick = np.sort(np.concatenate([rng.permutation(pool.by_class[c])[:limit // 2] for c in (FAKE, REAL)]))
    return np.stack([pool.image(int(k)) for k in pick]), pool.labels[pick].astype(np.float32)


def arrays(x, y, batch: int = 64):
    """A holdout set held in memory, as the callable of batches the training loop scores."""
    return lambda: ((x[i:i + batch], y[i:i + batch], np.ones(len(y[i:i + batch]), np.float32))
                    for i in range(0, len(y), batch))


def pooled(sets):
    """All holdout sets as one stream (for the threshold: each image its own group)."""
    return lambda: (b for _, batches in sets for b in batches())


def mixed_source(a, augment):
    """For `python -m training.train --source ...` (its parsed arguments `a`): (what the card
    says of the data, a function epoch -> batches, the named holdout sets, steps per epoch)."""
    from . import sources
    srcs = [sources.Source.parse(s) for s in a.source]
    if len({s.name for s in srcs}) != len(srcs):
        raise DatasetError("two --source options share a name")
    cache = a.cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
        "screener" / "pools"
    pools, sets, info, blends = [], [], {"sources": {}}, []
    for src in srcs:
        sp = sources.splits(src, a.holdout, a.seed, a.holdout_by)
        if a.limit:
            sp["train"] = [sp["train"][i] for i in sorted(
                np.random.default_rng(a.seed).permutation(len(sp["train"]))[:a.limit])]
        kp = sources.keypoints(src)
        train_pool = Pool(sp["train"], cache, kp, a.workers)
        pools.append(train_pool)
        sel = Pool(sp["select"], cache, kp, a.workers)
        if len(sel.by_class[0]) and len(sel.by_class[1]):
            sets.append((src.name, arrays(*fixed_set(sel, a.holdout_limit, a.seed))))
        if a.sbi_share and len(sel.by_class[0]):
            blends.append(pseudo_fake_set(sel, a.holdout_limit // (2 * len(srcs)), a.seed))
        info["sources"][src.name] = {
            "root": str(src.root), "layout": src.layout, "weight": src.weight,
            "train_images": len(train_pool), "train_fakes": int(train_pool.labels.sum()),
            "select_images": len(sel), "test_images": len(sp["test"]),
            "keypoints": int(np.isfinite(train_pool.keypoints[:, 0, 0]).sum())}
    if blends:
        sets.append(("sbi", arrays(np.concatenate([b[0] for b in blends]),
                                    np.concatenate([b[1] for b in blends]))))
    if not sets:
        held = {n: v["select_images"] for n, v in info["sources"].items()}
        raise DatasetError(f"no holdout set: the selection groups (images per source: {held}) "
                           "need both classes, or reals and --sbi-share; add videos or people")
    stream = MixedStream(pools, [s.weight for s in srcs], a.batch_size, a.sbi_share,
                             augment=augment, seed=a.seed, workers=a.workers)
    n = a.epoch_images or sum(len(p) for p in pools)
    steps = -(-n // a.batch_size)
    info.update(train_images=sum(len(p) for p in pools), epoch_images=steps * a.batch_size,
                holdout_images=int(sum(sum(len(b[1]) for b in batches()) for _, batches in sets)),
                holdout_sets=[name for name, _ in sets], sbi_share=a.sbi_share,
                sbi=sbi.SBIOptions().options() if a.sbi_share else None,
                holdout_by=a.holdout_by)
    return info, lambda epoch: stream.epoch(epoch, steps), sets, steps
