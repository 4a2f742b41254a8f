"""What a model costs per face: LiteRT on one CPU thread, as a scan's scoring stage runs it.

    python bench/model_cost.py screener-meso screener-meso4-mix [--faces 256] [--rounds 7]

Every model scores the same batch of crops in interleaved rounds (this machine's speed drifts
between minutes), one thread each, after a warm-up; the figure is the median over rounds, and
each model's ratio to the first is taken within a round. Writes bench/results/model_cost.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="shipped names or model files; the first is the baseline")
    ap.add_argument("--faces", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/model_cost.json")
    a = ap.parse_args(argv)

    from screener import lite
    from screener.scoring import load_model
    if not lite.available():
        raise SystemExit("error: LiteRT is not installed here")
    nets = [lite.LiteNet(lite.convert(load_model(m).model), threads=1) for m in a.models]
    fps = lite.faces_per_second(nets, a.faces, a.rounds)  # (rounds, models)
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "runtime": "LiteRT, 1 thread",
           "faces": a.faces, "rounds": a.rounds, "models": {}}
    for k, m in enumerate(a.models):
        med = float(np.median(fps[:, k]))
        res["models"][m] = {"faces_per_s": round(med, 1), "ms_per_face": round(1000 / med, 2),
                            "speed_vs_first": round(float(np.median(fps[:, k] / fps[:, 0])), 3)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
