"""Unchanged-rerun time of an incremental scan against the full scan of the same folder.

    .venv/bin/python bench/incremental.py [--clips 20] [--frames 8]

Makes N small clips (320x240, 8 frames, one face) and a tiny Meso-4 model in a temporary
folder, then times three `screener scan DIR --out report.csv` subprocesses, as cron runs them:
the first (full) scan, an unchanged rerun, and a rerun after one file was touched. Wall time
includes the interpreter start; the first run's includes the TensorFlow import and model load,
which an unchanged rerun skips. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    from clips import constant_model as build_tiny_model, one_face  # bench/clips.py
    from screener import synth

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = tmp / "clips"
        clips.mkdir()
        for i in range(args.clips):
            synth.face_clip(clips / f"c{i:03d}.mp4", 320, 240, n_frames=args.frames,
                            faces=[one_face("collins", x=20 + 5 * (i % 20))], seed=i)
        model = build_tiny_model(tmp)
        cmd = [sys.executable, "-m", "screener", "scan", str(clips), "--model", str(model),
               "--frames", str(args.frames), "--out", str(tmp / "report.csv"), "--settle", "0"]

        def timed() -> tuple[float, str]:
            t = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, check=True)
            return time.perf_counter() - t, p.stderr.strip().splitlines()[-1]

        full_s, full_line = timed()
        report = (tmp / "report.csv").read_bytes()
        rerun_s, rerun_line = timed()
        identical = (tmp / "report.csv").read_bytes() == report
        os.utime(clips / "c000.mp4")
        one_s, one_line = timed()
    print(json.dumps({
        "clips": args.clips, "frames": args.frames, "size": "320x240",
        "full_scan_s": round(full_s, 2), "unchanged_rerun_s": round(rerun_s, 2),
        "one_touched_rerun_s": round(one_s, 2), "speedup": round(full_s / rerun_s, 1),
        "report_identical": identical, "cpus": os.cpu_count(), "machine": platform.machine(),
        "summaries": [full_line, rerun_line, one_line],
    }, indent=1))


if __name__ == "__main__":
    main()
