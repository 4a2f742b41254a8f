"""A contact sheet per video, one row per person: how the people count of a scan is checked.

    python bench/people_sheet.py VIDEO... [--out DIR]

Each video is read as the scan reads it (`screener.pipeline.crops_from_video`, default
sampling: every face, linked into people) and drawn as one PNG: a row per person, labelled with
its id and face count, up to 12 of its faces spread over the video. Every row should be one
person and every person one row. Prints the people found and their face counts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from screener.options import SampleOptions
from screener.pipeline import crops_from_video

TILE, PER_ROW, LABEL = 96, 12, 80


def sheet(video) -> Image.Image:
    ids = sorted({c.person for c in video.crops})
    img = Image.new("RGB", (LABEL + PER_ROW * TILE, TILE * max(1, len(ids))), "white")
    draw = ImageDraw.Draw(img)
    for row, who in enumerate(ids):
        mine = [c for c in video.crops if c.person == who]
        draw.text((4, row * TILE + 40), f"p{who} n={len(mine)}", fill="black")
        for k, i in enumerate(np.linspace(0, len(mine) - 1, min(PER_ROW, len(mine)))):
            face = Image.fromarray(mine[int(i)].crop).resize((TILE, TILE))
            img.paste(face, (LABEL + k * TILE, row * TILE))
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--out", type=Path, default=Path("people_sheets"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.videos:
        video = crops_from_video(path, SampleOptions())
        if video.error:
            print(f"{path}: {video.error}")
            continue
        out = args.out / f"{Path(path).stem}.png"
        sheet(video).save(out)
        ids = sorted({c.person for c in video.crops})
        counts = {w: sum(c.person == w for c in video.crops) for w in ids}
        print(f"{path}: {video.frames_sampled} frames, people (id: faces) {counts} -> {out}")


if __name__ == "__main__":
    main()
