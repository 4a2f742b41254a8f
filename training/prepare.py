"""Build the training trees of the fetched sources from local copies; nothing is downloaded.

    python -m training.prepare --dfdc SRC/DeepFake-Detection --ffpp SRC/FaceForensics \
        --excluded ../shared/data/wild-faces/dfdc-excluded.txt --out data/fetched

Two sources, each written as a `grouped` source for `training.sources` (class folders and a
`metadata.csv`), with the images hard-linked (or copied across file systems) from the copy:
- `OUT/dfdc/`: every crop of a checkout of i-Shreyansh/DeepFake-Detection (`faces_224/`,
  `metadata.csv`: videoname, ..., label, original) except the videos that no training may use
  (their name or their `original` is listed in --excluded). The group is the real video (a
  fake's `original`, a real's own name), as in `../shared/data/wild-faces/dfdc`, so the hash
  split puts a person's real and fakes on one side, and the benchmark's DFDC test groups are
  the same groups here: never trained on.
- `OUT/ffpp/`: FaceForensics++ c23's train split only (`image/train/<method>/roi_N.jpg` of a
  checkout of tranthuhoai3786/FaceForensics). Its crops carry no video id, and the fakes of one
  video show the same frame as its real: images are grouped by near-duplicate thumbnails across
  methods (`training.groups`, cosine > --duplicate) and consecutive alike files of one method,
  and `split` names the selection carve (--select of the groups) or train. FF++'s test split is
  never read: the benchmark's FF++ figures come from it.

Then align both with the scan's face pipeline (`python -m training.align OUT/dfdc
OUT/dfdc-aligned --no-face skip`, the same for ffpp) and train with `--source dfdc=...`.
OUT/prepare.json records what was read (counts, exclusions, the copies' commits if given).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
FFPP_REAL = "youtube"


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copyfile(src, dst)


def _write_table(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def read_excluded(path: Path) -> set[str]:
    names = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line)
    return names


def prepare_dfdc(src: Path, out: Path, excluded: set[str]) -> dict:
    """OUT/{real,df}/<video>.jpg and metadata.csv (file,label,video,original,group)."""
    table = src / "metadata.csv"
    if not table.is_file() or not (src / "faces_224").is_dir():
        raise SystemExit(f"error: {src} is not a DeepFake-Detection copy (metadata.csv, faces_224/)")
    rows, skipped = [], Counter()
    with open(table, newline="", encoding="utf-8-sig") as f:
        for r in csv.DictReader(f):
            video = r["videoname"].strip()
            label = r["label"].strip().upper()
            original = (r.get("original") or "").strip()
            if label not in ("REAL", "FAKE"):
                skipped["unlabelled"] += 1
                continue
            if label == "REAL":
                original = ""
            if video in excluded or (original and original in excluded):
                skipped["excluded"] += 1
                continue
            image = src / "faces_224" / (Path(video).stem + ".jpg")
            if not image.is_file():
                skipped["no image"] += 1
                continue
            cls = "real" if label == "REAL" else "df"
            rel = f"{cls}/{Path(video).stem}.jpg"
            _place(image, out / rel)
            rows.append({"file": rel, "label": cls, "video": video, "original": original,
                         "group": original or video})
    _write_table(out / "metadata.csv", rows)
    counts = Counter(r["label"] for r in rows)
    return {"real": counts["real"], "df": counts["df"],
            "groups": len({r["group"] for r in rows}), "skipped": dict(skipped)}


def _select(group: str, share: float) -> bool:
    from .sources import hash_share
    return hash_share(group) < share


def prepare_ffpp(src: Path, out: Path, select: float, duplicate: float,
                 consecutive: float) -> dict:
    """OUT/{real,df}/<method>_roi_N.jpg and metadata.csv (file,label,method,group,split)."""
    from .groups import describe, near_duplicate_groups

    train = src / "image" / "train"
    if not train.is_dir():
        raise SystemExit(f"error: {src} has no image/train/ (a FaceForensics copy)")
    files, methods = [], []
    for method in (FFPP_REAL,) + FFPP_METHODS:
        found = sorted((train / method).glob("*.jpg"),
                       key=lambda p: (len(p.stem), p.stem))  # roi_2 before roi_10
        files += found
        methods += [method] * len(found)
    if not files:
        raise SystemExit(f"error: no crops under {train}")
    groups = near_duplicate_groups(describe(files), consecutive=consecutive,
                                   duplicate=duplicate, runs=np.array(methods))
    rows = []
    for path, method, g in zip(files, methods, groups):
        cls = "real" if method == FFPP_REAL else "df"
        rel = f"{cls}/{method}_{path.name}"
        _place(path, out / rel)
        name = f"ffpp-{g}"
        rows.append({"file": rel, "label": cls, "method": method, "group": name,
                     "split": "select" if _select(name, select) else "train"})
    _write_table(out / "metadata.csv", rows)
    sizes = Counter(r["group"] for r in rows)
    by = Counter((r["split"], r["method"]) for r in rows)
    return {"images": len(rows), "groups": len(sizes), "largest_group": max(sizes.values()),
            "per_split_method": {f"{s}/{m}": n for (s, m), n in sorted(by.items())}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dfdc", type=Path, help="a copy of i-Shreyansh/DeepFake-Detection")
    p.add_argument("--ffpp", type=Path, help="a copy of tranthuhoai3786/FaceForensics")
    p.add_argument("--excluded", type=Path, help="DFDC videos no training may use "
                   "(../shared/data/wild-faces/dfdc-excluded.txt); required with --dfdc")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--select", type=float, default=0.12,
                   help="share of FF++ groups carved for model selection (default 0.12)")
    p.add_argument("--duplicate", type=float, default=0.95,
                   help="thumbnail cosine above which two FF++ crops are one group (default 0.95)")
    p.add_argument("--consecutive", type=float, default=0.8,
                   help="... and two consecutive crops of one method (default 0.8)")
    p.add_argument("--commit", action="append", default=[], metavar="NAME=SHA",
                   help="record a copy's commit in prepare.json (e.g. dfdc=3972853...)")
    a = p.parse_args(argv)
    if not a.dfdc and not a.ffpp:
        p.error("name --dfdc, --ffpp or both")
    if a.dfdc and not a.excluded:
        p.error("--dfdc needs --excluded: the held-out DFDC people must never be trained on")
    a.out.mkdir(parents=True, exist_ok=True)
    record = {"commits": dict(c.split("=", 1) for c in a.commit)}
    if a.dfdc:
        record["dfdc"] = {"from": str(a.dfdc), **prepare_dfdc(a.dfdc, a.out / "dfdc",
                                                              read_excluded(a.excluded))}
        print(f"dfdc: {record['dfdc']}")
    if a.ffpp:
        record["ffpp"] = {"from": str(a.ffpp), **prepare_ffpp(
            a.ffpp, a.out / "ffpp", a.select, a.duplicate, a.consecutive)}
        print(f"ffpp: {record['ffpp']}")
    (a.out / "prepare.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
