"""Pseudo-videos for datasets whose file names carry no video id (the DF train split is
`df00000.jpg`, `df00001.jpg`, ...), so the model-selection holdout does not share videos with
the images trained on.

Frames of one video look alike. Each image is described by its 16x16 thumbnail (mean removed,
unit length: the cosine similarity of two thumbnails is their correlation); two images of a
class are linked when they are neighbours in file order and alike (> `consecutive`), or
near-duplicates anywhere (> `duplicate`). A group is a connected component of those links.

`nearest_similarity` measures what a holdout leaks: for each held-out image, its similarity to
the most alike training image (`python -m training.leakage` prints it; docs/model.md has the
figures). `training.data.holdout_split` uses these groups; this module imports nothing of
training.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

THUMB = 16
CONSECUTIVE, DUPLICATE = 0.7, 0.93


def describe(paths, workers: int = 2) -> np.ndarray:
    """(N, 768) float32 unit thumbnails; an unreadable image gets a zero row (linked to none)."""
    import cv2
    from concurrent.futures import ThreadPoolExecutor

    from screener.images import read_rgb

    def one(path):
        try:
            rgb = read_rgb(path)
        except Exception:  # counted and warned by the batch reader; here it only stays alone
            return np.zeros(THUMB * THUMB * 3, np.float32)
        v = cv2.resize(rgb, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        v -= v.mean()
        n = np.linalg.norm(v)
        return v / n if n > 0 else v

    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(one, paths))
    return np.stack(rows) if rows else np.zeros((0, THUMB * THUMB * 3), np.float32)


def near_duplicate_groups(desc: np.ndarray, consecutive: float = CONSECUTIVE,
                          duplicate: float = DUPLICATE, chunk: int = 2048,
                          runs: np.ndarray | None = None) -> np.ndarray:
    """Group id per row of `desc` (rows in file order). `runs` (one label per row, e.g. its
    folder) keeps the consecutive links inside a run: neighbours across a boundary are unrelated."""
    n = len(desc)
    rows, cols = [], []
    alike = (desc[1:] * desc[:-1]).sum(1) > consecutive
    if runs is not None:
        runs = np.asarray(runs)
        alike &= runs[1:] == runs[:-1]
    nxt = np.flatnonzero(alike)
    rows.append(nxt)
    cols.append(nxt + 1)
    for i in range(0, n, chunk):  # all pairs, a block of rows at a time: memory stays chunk x n
        r, c = np.nonzero(desc[i:i + chunk] @ desc.T > duplicate)
        rows.append(r + i)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def nearest_similarity(held: np.ndarray, fit: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each row of `held`, the highest cosine similarity to any row of `fit`."""
    out = np.full(len(held), -1.0, np.float32)
    for i in range(0, len(held), chunk):
        out[i:i + chunk] = (held[i:i + chunk] @ fit.T).max(1)
    return out
