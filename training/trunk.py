"""Fine-tuning with a frozen trunk whose outputs are computed once and cached on disk.

When blocks 1..N are frozen (`--freeze-blocks N`), every epoch would push each image through
the same frozen convolutions again; on a 2-core CPU that forward pass is most of the cost.
`--cache-trunk` runs it once per image (no augmentation: the cache holds the plain image's
features), stores the blockN_pool output as float16 in a memory-mapped `.npy` in the run folder
(read a batch at a time, never loaded whole) and trains only the layers after the cut.
`--reuse-cache RUN` takes the rows another run of the same trunk already computed.

The head shares its layers with the full model, so the full model (and `best.keras`) holds the
trained weights with no copying. The cache fills in chunks and resumes where it stopped.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from .data import BatchStream

log = logging.getLogger(__name__)


def split_model(model, n: int):
    """(trunk: image -> blockN_pool output, head: that output -> P(fake)), sharing layers.
    After block 2 MesoNet is a plain chain, so the head replays the layers after the cut."""
    import keras
    names = [lay.name for lay in model.layers]
    i = names.index(f"block{n}_pool")
    cut = model.layers[i].output
    trunk = keras.Model(model.input, cut, name=f"trunk{n}")
    x = inp = keras.Input(cut.shape[1:], name="features")
    for layer in model.layers[i + 1:]:
        x = layer(x)
    return trunk, keras.Model(inp, x, name=f"head{n}")


def build_cache(trunk, samples, path: Path, resize_mode: str, batch_size: int = 64,
                workers: int = 2, progress: bool = True, reuse=(), trunk_id: str = "") -> np.ndarray:
    """Features of `samples` in order, as a read-only float16 memmap (N, H, W, C).

    Rows already computed (this cache, interrupted; or `reuse`: other caches of the same trunk,
    matched by file path and `trunk_id`) are not computed again. Unreadable images get all-zero
    features and are listed in `<path>.json` ("skipped") so the caller can leave them out."""
    meta_path, mask_path = path.with_suffix(".json"), path.with_suffix(".done.npy")
    shape = (len(samples),) + tuple(int(d) for d in trunk.output.shape[1:])
    paths = [str(s.path) for s in samples]
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if (meta is None or meta["paths"] != paths or tuple(meta["shape"]) != shape
            or meta.get("trunk_id") != trunk_id or not mask_path.is_file()):
        meta = {"paths": paths, "shape": shape, "trunk_id": trunk_id, "skipped": []}
        np.lib.format.open_memmap(path, "w+", np.float16, shape).flush()
        np.save(mask_path, np.zeros(len(samples), bool))
    feats = np.lib.format.open_memmap(path, "r+")
    done = np.load(mask_path)
    row_of = {p: i for i, p in enumerate(paths)}
    for other in reuse:
        other = Path(other)
        om_path, omask_path = other.with_suffix(".json"), other.with_suffix(".done.npy")
        if other == path or not (om_path.is_file() and omask_path.is_file()):
            continue
        om = json.loads(om_path.read_text())
        if om.get("trunk_id") != trunk_id or tuple(om["shape"][1:]) != shape[1:]:
            continue
        ofeats, omask = np.load(other, mmap_mode="r"), np.load(omask_path)
        pairs = [(row_of[p], j) for j, p in enumerate(om["paths"])
                 if p in row_of and omask[j] and not done[row_of[p]] and p not in om["skipped"]]
        for k in range(0, len(pairs), 1024):
            mine, theirs = zip(*pairs[k:k + 1024])
            feats[list(mine)] = ofeats[list(theirs)]
            done[list(mine)] = True
        log.info("reused %d rows from %s", len(pairs), other)
    feats.flush()
    np.save(mask_path, done)
    t0, todo = time.time(), np.flatnonzero(~done)
    chunk = batch_size * 8  # checkpoint the cache every few batches
    for k in range(0, len(todo), chunk):
        rows = todo[k:k + chunk]
        part = [samples[i] for i in rows]
        stream = BatchStream(part, batch_size, resize_mode, workers=workers)
        outs = [np.asarray(trunk.predict_on_batch(x), np.float16) for x, _, _ in stream]
        if outs:
            feats[[row_of[str(s.path)] for s in stream.kept]] = np.concatenate(outs)
        meta["skipped"] += sorted(stream.stats.skipped)
        done[rows] = True
        feats.flush()
        np.save(mask_path, done)
        meta_path.write_text(json.dumps(meta))
        if progress:
            n = k + len(rows)
            print(f"  cache {path.name}: {n}/{len(todo)} to compute "
                  f"({n / (time.time() - t0):.1f} img/s)", flush=True)
    meta_path.write_text(json.dumps(meta))
    del feats
    return np.load(path, mmap_mode="r")


def cached_batches(feats, labels, weights, batch_size, rng=None):
    """Batches (features float32, labels, weights) from the cache, shuffled when rng is given."""
    order = np.arange(len(labels))
    if rng is not None:
        rng.shuffle(order)
    for i in range(0, len(order), batch_size):
        idx = np.sort(order[i:i + batch_size])  # sorted reads are kinder to the page cache
        if rng is not None:
            rng.shuffle(idx)
        yield np.asarray(feats[idx], np.float32), labels[idx], weights[idx]


def cached_source(model, a, fit_set, held, weights):
    """Frozen trunk computed once (see training.trunk); returns (net to train, batch makers)."""
    from screener.scoring import file_sha256

    trunk, head = split_model(model, a.freeze_blocks)
    # The cached features depend on the frozen weights (the --init file), the cut and the resize.
    trunk_id = f"{file_sha256(Path(a.init))[:16] if a.init else 'random-seed' + str(a.seed)}" \
               f"-block{a.freeze_blocks}-{a.resize}"
    print(f"caching block{a.freeze_blocks} features (once; resumable)", flush=True)
    out = []
    for name, part in (("fit", fit_set), ("holdout", held)):
        path = a.run / f"cache_{name}_block{a.freeze_blocks}.npy"
        reuse = [r / path.name for r in a.reuse_cache] + sorted(
            p for r in a.reuse_cache for p in r.glob(f"cache_*_block{a.freeze_blocks}.npy"))
        feats = build_cache(trunk, part, path, a.resize, workers=a.workers, progress=True,
                               reuse=list(dict.fromkeys(reuse)), trunk_id=trunk_id)
        bad = set(json.loads(path.with_suffix(".json").read_text())["skipped"])
        rows = np.array([i for i, s in enumerate(part) if str(s.path) not in bad], int)
        y = np.array([part[i].label for i in rows], np.float32)
        w = np.array([(weights or {0: 1.0, 1: 1.0})[int(v)] for v in y], np.float32)
        out.append((feats, rows, y, w))
    (ff, fr, fy, fw), (hf, hr, hy, hw) = out

    class Rows:  # the cache's rows of readable images, without copying the memmap
        def __init__(self, feats, rows):
            self.feats, self.rows = feats, rows

        def __getitem__(self, idx):
            return self.feats[self.rows[idx]]

    fit_rows, held_rows = Rows(ff, fr), Rows(hf, hr)
    train_batches = lambda epoch: cached_batches(  # noqa: E731
        fit_rows, fy, fw, a.batch_size, np.random.default_rng((a.seed, epoch)))
    held_batches = lambda: cached_batches(held_rows, hy, hw, 256)  # noqa: E731
    held_batches.samples = lambda: [held[i] for i in hr]  # noqa: E731  in the order scored
    return head, train_batches, held_batches, -(-len(fy) // a.batch_size)
