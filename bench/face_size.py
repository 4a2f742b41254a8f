"""How small may a face be and still be judged? Accuracy and AUC against the face's width.

    python bench/face_size.py [--model M] [--n 800]

Takes aligned validation crops (../shared: the re-aligned copy made by `training.align`, or the
raw crops aligned on the fly), shrinks each so that its face is W pixels wide, as a face of
that width in a video frame would be, and aligns it back up to 256 (the same bilinear warp the
scan applies), then scores it. The face is about 2 eye distances wide: 158 px in the crop.
This is the measurement behind `screener.options.MIN_FACE_PX`.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from screener import scoring  # noqa: E402
from screener.align import TEMPLATE  # noqa: E402
from screener.images import read_rgb  # noqa: E402

ALIGNED = Path("/work/data/mesonet-df-aligned/validation")
FACE_PX_IN_CROP = 2 * (TEMPLATE[1, 0] - TEMPLATE[0, 0]) * 256


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", type=Path, default=ALIGNED)
    ap.add_argument("--n", type=int, default=800)
    args = ap.parse_args()
    from sklearn.metrics import roc_auc_score

    scorer = scoring.load_model(args.model)
    files = sorted(args.data.glob("df/*.png")) + sorted(args.data.glob("real/*.png"))
    random.Random(0).shuffle(files)
    files = files[:args.n]
    labels = np.array([1 if f.parent.name == "df" else 0 for f in files])
    crops = np.stack([read_rgb(f) for f in files])
    out = {"model": scorer.card.name, "images": len(files), "rows": []}
    for width in (24, 32, 48, 64, 80, 96, 128, None):
        if width is None:
            x = crops
        else:
            side = max(2, round(256 * width / FACE_PX_IN_CROP))
            x = np.stack([cv2.resize(cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA),
                                     (256, 256), interpolation=cv2.INTER_LINEAR) for c in crops])
        p = scorer.predict(x)
        acc = float(((p >= scorer.card.threshold) == labels).mean())
        row = {"face_width_px": width or "native", "accuracy": round(acc, 3),
               "auc": round(float(roc_auc_score(labels, p)), 3)}
        out["rows"].append(row)
        print(row, flush=True)
    (ROOT / "bench/results").mkdir(exist_ok=True)
    (ROOT / "bench/results/face_size.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
