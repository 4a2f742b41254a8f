"""`screener extract` with worker processes against all in the main process, same clips.

    .venv/bin/python bench/extract.py [--clips 24] [--frames 16] [--rounds 3]

Makes N clips (640x360, 75 frames, one face drifting) in a temporary folder, then runs
`screener extract` subprocesses into fresh folders, as a user runs them: `--workers 0` and the
default (one worker per core), interleaved for `--rounds` rounds (this machine's speed drifts
between minutes). Checks that both give the same dataset, byte for byte. Prints one JSON object:
medians and each round's ratio.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".extract.lock"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from clips import one_face  # bench/clips.py
    from screener import synth

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = tmp / "clips"
        clips.mkdir()
        for i in range(args.clips):
            synth.face_clip(clips / f"c{i:03d}.mp4", 640, 360, n_frames=75, seed=i,
                            faces=[one_face(("collins", "hopper")[i % 2], x=40 + 9 * (i % 20),
                                            y=60, face_px=110)], drift_px=2)

        def timed(name: str, *extra: str) -> float:
            out = tmp / name
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "screener", "extract", str(clips), "--out",
                            str(out), "--frames", str(args.frames), "-q", *extra], check=True)
            return time.perf_counter() - t

        rounds = []
        for r in range(args.rounds):
            alone = timed(f"alone{r}", "--workers", "0")
            pooled = timed(f"pooled{r}")
            rounds.append({"workers_0_s": round(alone, 2), "default_workers_s": round(pooled, 2),
                           "speedup": round(alone / pooled, 2)})
        same = all(snapshot(tmp / f"alone{r}") == snapshot(tmp / f"pooled{r}")
                   for r in range(args.rounds))
        crops = sum(1 for _ in (tmp / "alone0").rglob("*.png"))
    print(json.dumps({
        "clips": args.clips, "frames": args.frames, "size": "640x360", "crops": crops,
        "workers_0_s": statistics.median(x["workers_0_s"] for x in rounds),
        "default_workers_s": statistics.median(x["default_workers_s"] for x in rounds),
        "speedup": statistics.median(x["speedup"] for x in rounds),
        "same_dataset": same, "rounds": rounds,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }, indent=1))


if __name__ == "__main__":
    main()
