"""Re-align an image dataset with the scan's face pipeline.

    python -m training.align SRC DST [--no-face resize|skip|copy] [--workers N]

Every image under SRC is read, its largest face is aligned to the 256x256 template by exactly
the code the scan uses (`screener.align.align_image`), and the crop is written losslessly (PNG)
to DST under the same relative path. The dataset's classes are framed differently (real crops
are tighter), so training on re-aligned crops keeps the model from learning framing.

Images where no face is found are handled by --no-face: `resize` (default) writes the image
resized to 256 with `screener.align.resize_to_model`, `skip` leaves it out, `copy` is like
resize but also lists it. All are counted per folder and listed in DST/align_report.json.

DST/faces.csv has a row per image written: its path under DST, the outcome, the share of the
crop that lay outside the source image (filled black; see `screener.align.MAX_OUTSIDE`) and the
face's six keypoints in crop pixels (training masks its pseudo-fakes with them). A run resumes:
an image with a row is not done again. The CSV tables at SRC's top (e.g. metadata.csv) are
copied to DST.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from screener.errors import ImageError
from screener.align import align_image, outside_share, resize_to_model, to_template
from screener.files import atomic_write
from screener.images import IMAGE_EXTENSIONS, read_rgb, write_png


FACES_COLUMNS = ("file", "outcome", "outside", "keypoints")


def _one(job: tuple[str, str, str]) -> tuple[str, str, dict | None]:
    """Align one image; returns (source path, outcome, its faces.csv row or None), outcome
    aligned|no_face|error:..."""
    src, dst, no_face = job
    try:
        rgb = read_rgb(src)
    except ImageError as e:
        return src, f"error: {e}", None
    face = align_image(rgb)
    row = {"outside": "", "keypoints": ""}
    if face is None:
        outcome = "no_face"
        if no_face == "skip":
            return src, outcome, None
        crop = resize_to_model(rgb)
    else:
        outcome, crop = "aligned", face.crop
        m = to_template(face.keypoints)
        kp = face.keypoints @ m[:, :2].T + m[:, 2]
        row = {"outside": f"{outside_share(rgb.shape, face.keypoints):.3f}",
               "keypoints": json.dumps(np.round(kp, 1).tolist())}
    # A killed run leaves no half-written image under its real name (faces.csv, written after,
    # is the record of what is done).
    with atomic_write(dst, "wb", encoding=None, newline=None, fsync=False) as f:
        write_png(f, crop)
    return src, outcome, {"file": dst, "outcome": outcome, **row}


def align_dataset(src: Path, dst: Path, no_face: str = "resize", workers: int | None = None,
                  progress: bool = True) -> dict:
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    table = dst / "faces.csv"
    done = set(read_faces(dst)) if table.exists() else set()
    jobs = []
    for p in files:
        out = dst / p.relative_to(src).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        if str(out.relative_to(dst)) not in done:  # resumable
            jobs.append((str(p), str(out), no_face))
    counts: dict[str, Counter] = {}
    for rel, r in read_faces(dst).items() if done else ():  # done by an earlier run
        counts.setdefault(str(Path(rel).parent), Counter())[r["outcome"]] += 1
    lists: dict[str, list] = {"no_face": [], "error": []}
    t0 = time.time()
    workers = workers or os.cpu_count() or 1
    new_table = not table.exists()
    # Spawned, not forked: the caller may hold threads (TensorFlow's, a test runner's) whose
    # locks a fork would copy held, hanging the workers.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool, \
            open(table, "a", newline="") as f:
        rows = csv.DictWriter(f, FACES_COLUMNS)
        if new_table:
            rows.writeheader()
        results = pool.map(_one, jobs, chunksize=16)
        for path, outcome, row in tqdm(results, total=len(jobs), disable=not progress, unit="img"):
            if row is not None:
                rows.writerow({**row, "file": str(Path(row["file"]).relative_to(dst))})
                f.flush()
            folder = str(Path(path).parent.relative_to(src))  # == its folder under dst
            kind = outcome.split(":")[0]
            counts.setdefault(folder, Counter())[kind] += 1
            if kind != "aligned":
                lists[kind].append({"path": str(Path(path).relative_to(src)), "outcome": outcome})
    report = {
        "src": str(src), "dst": str(dst), "no_face": no_face, "images": len(files),
        "processed_now": len(jobs), "seconds": round(time.time() - t0, 1),
        "per_folder": {k: dict(v) for k, v in sorted(counts.items())},
        "no_face_images": lists["no_face"], "errors": lists["error"],
    }
    (dst / "align_report.json").write_text(json.dumps(report, indent=1))
    # The dataset's own tables (labels, groups) travel with it; training.sources matches their
    # file names to the aligned .png files by path without suffix.
    for table in src.glob("*.csv"):
        if table.name not in ("faces.csv",) and not (dst / table.name).exists():
            shutil.copyfile(table, dst / table.name)
    return report


def read_faces(dst: Path) -> dict[str, dict]:
    """DST/faces.csv as {path under DST: {"outcome", "outside" (float or None), "keypoints"
    ((6, 2) crop pixels, or None)}}."""
    out = {}
    with open(Path(dst) / "faces.csv", newline="") as f:
        for r in csv.DictReader(f):
            out[r["file"]] = {"outcome": r["outcome"],
                              "outside": float(r["outside"]) if r["outside"] else None,
                              "keypoints": (np.array(json.loads(r["keypoints"]), np.float32)
                                            if r["keypoints"] else None)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.align", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="dataset root (any folder layout)")
    ap.add_argument("dst", type=Path, help="output root (same layout, .png files)")
    ap.add_argument("--no-face", choices=("resize", "skip", "copy"), default="resize",
                    help="what to do with an image where no face is found (default: resize)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if not args.src.is_dir():
        print(f"error: {args.src} is not a folder", file=sys.stderr)
        return 2
    if args.dst.resolve() == args.src.resolve() or args.src.resolve() in args.dst.resolve().parents:
        print("error: DST must be outside SRC", file=sys.stderr)
        return 2
    args.dst.mkdir(parents=True, exist_ok=True)
    rep = align_dataset(args.src, args.dst, args.no_face, args.workers, sys.stderr.isatty())
    for folder, c in rep["per_folder"].items():
        total = sum(c.values())
        print(f"{folder}: {total} images, {c.get('aligned', 0)} aligned, "
              f"{c.get('no_face', 0)} without a detected face ({args.no_face}), "
              f"{c.get('error', 0)} unreadable (skipped)")
    print(f"report: {args.dst / 'align_report.json'} ({rep['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
