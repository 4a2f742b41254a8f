"""Training sources: several face datasets in one run, each split by the groups that must never
straddle training and evaluation.

    --source NAME=PATH[@WEIGHT]     e.g.  --source df=/work/data/mesonet-df-aligned
                                          --source dfdc=/work/data/dfdc-aligned@2

A source's layout is recognised from its files:
- `folders`: `PATH/<split>/{df,real}` (the MesoNet dataset). Its `train` split is carved into
  training and selection images (`data.holdout_split`: by video id, or groups of alike images);
  its `validation` split is the test set and never read here.
- `grouped`: a `metadata.csv` with file,label,group columns (the DFDC faces: `group` is the real
  source video, shared by the fakes made from it) and class folders beside it.
- `extract`: a `screener extract` dataset (`manifest.csv`; the group is the video).
For the last two every group goes to one side by a hash of its name: `test` (TEST_SHARE, for
`training.benchmark`), `select` (SELECT_SHARE, model selection), else `train`; a `split`
column in the table, where present, names the side instead (training.prepare's FF++ carve). The hash gives
every run and the benchmark the same split without a file to share.

Keypoints for the pseudo-fakes' masks come from `faces.csv` (written by `training.align`) or an
extract manifest; a crop without them uses the template's.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from screener.images import IMAGE_EXTENSIONS

from .data import FAKE, REAL, DatasetError, Sample, holdout_split, list_split

TEST_SHARE, SELECT_SHARE = 0.15, 0.10
LAYOUTS = ("folders", "grouped", "extract")
SPLITS = ("train", "select", "test")
_LABELS = {"df": FAKE, "fake": FAKE, "real": REAL}


@dataclass(frozen=True)
class Source:
    name: str
    root: Path
    weight: float = 1.0

    @classmethod
    def parse(cls, spec: str) -> "Source":
        """`NAME=PATH[@WEIGHT]`."""
        name, sep, rest = spec.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--source {spec!r}: expected NAME=PATH[@WEIGHT], NAME a word")
        path, _, weight = rest.rpartition("@") if "@" in rest else (rest, "", "")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"--source {spec!r}: weight {weight!r} is not a number") from None
        if not w > 0:
            raise ValueError(f"--source {spec!r}: the weight must be above 0")
        return cls(name, Path(path), w)

    @property
    def layout(self) -> str:
        if (self.root / "manifest.csv").is_file():
            return "extract"
        if (self.root / "metadata.csv").is_file():
            return "grouped"
        if (self.root / "train").is_dir():
            return "folders"
        raise DatasetError(f"source {self.name}: {self.root} is none of the known layouts "
                           "(<split>/{df,real}, metadata.csv with a group column, an extract "
                           "dataset's manifest.csv)")


def hash_share(name: str) -> float:
    """A number in [0, 1) fixed by `name`: the same split on every machine and run, without a
    file to share."""
    return int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def split_of(group: str) -> str:
    """`test`, `select` or `train` for a group name, the same in every run."""
    h = hash_share(group)
    return "test" if h < TEST_SHARE else "select" if h < TEST_SHARE + SELECT_SHARE else "train"


def _stem_index(root: Path) -> dict[str, Path]:
    """Images under root by their relative path without suffix: an aligned copy (.png) still
    matches its table's original names (.jpg)."""
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*"))
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()}


def _read_table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _grouped(src: Source, table: str, file_col: str, group_col: str) -> list[tuple[Sample, str]]:
    """(sample, its split) for each labelled image found: the table's `split` column where it
    has one (a carve made when the source was built, e.g. training.prepare's FF++), else the
    hash of the group as the table names it."""
    rows = _read_table(src.root / table)
    if rows and not {file_col, "label", group_col} <= set(rows[0]):
        raise DatasetError(f"source {src.name}: {table} needs columns {file_col}, label and "
                           f"{group_col}; it has {', '.join(rows[0])}")
    images = _stem_index(src.root)
    out = []
    for r in rows:
        p = images.get(str(Path(r[file_col]).with_suffix("")))
        label = _LABELS.get(r["label"].strip().lower())
        if p is None or label is None:  # not aligned (no face found), or unlabelled
            continue
        split = (r.get("split") or "").strip() or split_of(r[group_col])
        if split not in SPLITS:
            raise DatasetError(f"source {src.name}: {table} names split {split!r} for "
                               f"{r[file_col]}; use one of {', '.join(SPLITS)}")
        out.append((Sample(p, label, r.get("video") or r.get("video_id") or None,
                           group_key=f"{src.name}:{r[group_col]}", source=src.name), split))
    if not out:
        raise DatasetError(f"source {src.name}: no labelled image of {table} found under {src.root}")
    return out


def splits(src: Source, holdout: float = 0.1, seed: int = 1234,
           holdout_by: str = "auto") -> dict[str, list[Sample]]:
    """{"train": [...], "select": [...], "test": [...]} for one source (test may be empty)."""
    layout = src.layout
    if layout == "folders":
        samples = [replace(s, source=src.name) for s in list_split(src.root, "train")]
        keep, held = holdout_split(samples, holdout, seed, holdout_by)
        return {"train": keep, "select": held, "test": []}
    if layout == "grouped":
        samples = _grouped(src, "metadata.csv", "file", "group")
    else:
        samples = _grouped(src, "manifest.csv", "crop_file", "video_id")
    out: dict[str, list[Sample]] = {"train": [], "select": [], "test": []}
    for s, split in samples:  # by the table's own names: the split does not depend on NAME
        out[split].append(s)
    return out


def keypoints(src: Source) -> dict[Path, np.ndarray]:
    """Each image's six keypoints in crop pixels, where known (faces.csv, or an extract
    manifest's frame keypoints mapped into the crop)."""
    out: dict[Path, np.ndarray] = {}
    faces_csv = src.root / "faces.csv"
    if faces_csv.is_file():
        for r in _read_table(faces_csv):
            if r.get("keypoints"):
                out[src.root / r["file"]] = np.array(json.loads(r["keypoints"]), np.float32)
    elif (src.root / "manifest.csv").is_file():
        from screener.align import to_template
        for r in _read_table(src.root / "manifest.csv"):
            kp = np.array(json.loads(r["keypoints"]), np.float64)
            m = to_template(kp)
            out[src.root / r["crop_file"]] = (kp @ m[:, :2].T + m[:, 2]).astype(np.float32)
    return out
