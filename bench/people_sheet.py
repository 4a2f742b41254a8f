"""A contact sheet of a scan's people: how the people count of a video is checked by eye.

    python bench/people_sheet.py VIDEO... [--out people.png]

The videos are extracted as the scan reads them (`screener.extract`, default sampling: every
face, linked into people) into a temporary dataset, and `extract.make_contact_sheet(by="person")`
draws a block per person of each video. Every block should be one person and every person one
block. Prints the people found per video and their face counts.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from screener import extract  # noqa: E402
from screener.extract import make_contact_sheet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--out", type=Path, default=Path("people.png"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ds = Path(tmp) / "ds"
        extract(args.videos, ds, label="unlabeled")
        with open(ds / "manifest.csv", encoding="utf-8", newline="") as f:
            faces = Counter((r["source_path"], r["person"]) for r in csv.DictReader(f))
        make_contact_sheet(ds, args.out, by="person")
    for video in args.videos:
        people = {p: n for (v, p), n in sorted(faces.items()) if v == video}
        print(f"{video}: people (id: faces) {people}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
