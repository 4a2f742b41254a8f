"""A scan of clips in a local S3 server against the scan of the same clips on disk, in one run.

    python bench/object_store.py [--clips 20] [--seconds 5] [--rounds 3] [--out FILE]

Needs the s3 extra and moto (`pip install -e '.[test,s3]'`). Makes `--clips` H.264 clips with a
face (720p, 30 fps, a keyframe every 2 s), starts moto's S3 server (`python -m moto.server`, a
subprocess on 127.0.0.1, on the same cores as the scan) and uploads them, then scans both in
`--rounds` interleaved rounds with the same engine (the local engine at its defaults, its
worker pool and each worker's client of the store started and warmed once), the shipped model
and the default sampling (32 frames): the disk folder, then `s3://bench/clips/`, the order
swapped every other round. This machine's speed drifts from one minute to the next, so each
ratio is taken within its round (disk time / object-store time: 1.0 means no cost, the goal
is >= 0.8) and the median is reported.

While the object-store scans run, a thread samples the temporary copies (screener.scratch)
every 2 ms: the peak bytes on local disk, against the bound (workers + 2) x the largest clip.
Then an incremental scan of the bucket twice: the unchanged rerun's time (it lists the bucket
and reads no object). Prints one JSON object and writes it to `--out`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.s3server import S3Server  # noqa: E402 - a local S3 server (moto)
from screener import scratch, synth  # noqa: E402


def make_clips(folder: Path, n: int, seconds: float) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        name = ["collins", "hopper"][i % 2]
        out.append(synth.face_clip(folder / f"clip{i:02d}.mp4", 1280, 720, int(30 * seconds),
                                   fps=30, faces=[synth.Placement(name, 300 + 20 * i, 90, 160)],
                                   seed=i, drift_px=1, options={"g": "60"}))
    return out


class DiskWatch:
    """The peak bytes of temporary copies under screener.scratch's root, sampled every 2 ms."""

    def __init__(self):
        self.peak, self.files = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.is_set():
            sizes = []
            for p in scratch.root().glob("*/*"):
                if p.name != ".lock":
                    try:
                        sizes.append(p.stat().st_size)
                    except FileNotFoundError:
                        pass
            self.peak, self.files = max(self.peak, sum(sizes)), max(self.files, len(sizes))
            time.sleep(0.002)

    def stop(self):
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "object_store.json"))
    args = ap.parse_args()
    from screener.api import scan_incremental
    from screener.discover import find_videos
    from screener.engines import make_engine
    from screener.options import EngineOptions, SampleOptions
    from screener.scoring import load_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        clips = make_clips(tmp / "clips", args.clips, args.seconds)
        make_s = time.perf_counter() - t
        server = S3Server(tmp)
        os.environ.update(server.env)
        os.environ["AWS_ENDPOINT_URL"] = server.moto  # straight to moto, no counting proxy
        server.bucket("bench")
        url = server.upload_folder(tmp / "clips", "bench", "clips")
        try:
            scorer = load_model(None)
            sample = SampleOptions()
            engine = make_engine(EngineOptions(), scorer, sample)
            engine.prepare()
            disk_paths, s3_paths = find_videos([tmp / "clips"]), find_videos([url])
            # Start and warm the worker pool, and each worker's client of the store.
            list(engine.run(disk_paths[:2] + s3_paths[:2]))
            rounds = []
            watch = None
            for k in range(args.rounds):
                times = {}
                for where in (("disk", "s3") if k % 2 == 0 else ("s3", "disk")):
                    paths = disk_paths if where == "disk" else s3_paths
                    watch = DiskWatch() if where == "s3" else None
                    t = time.perf_counter()
                    results = list(engine.run(paths))
                    times[where] = time.perf_counter() - t
                    if watch:
                        watch.stop()
                        times["peak_bytes"], times["peak_files"] = watch.peak, watch.files
                    times[f"{where}_rows"] = [(r.status, r.fake_score) for r in results]
                same = times.pop("disk_rows") == times.pop("s3_rows")
                rounds.append({"disk_s": round(times["disk"], 2), "s3_s": round(times["s3"], 2),
                               "ratio": round(times["disk"] / times["s3"], 3),
                               "peak_temp_bytes": times["peak_bytes"],
                               "peak_temp_files": times["peak_files"],
                               "same_rows": same})
            workers = engine.reader.workers
            engine.close()
            report = tmp / "report.csv"
            scan_incremental([url], out=report, settle_s=0)
            t = time.perf_counter()
            rerun = scan_incremental([url], out=report, settle_s=0)
            rerun_s = time.perf_counter() - t
        finally:
            server.close()
        largest = max(p.stat().st_size for p in clips)
        peak = max(r["peak_temp_bytes"] for r in rounds)
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "clips": args.clips, "size": "1280x720", "seconds_each": args.seconds,
            "bytes_total": sum(p.stat().st_size for p in clips), "largest_bytes": largest,
            "make_s": round(make_s, 1), "workers": workers, "frames_per_video": sample.frames,
            "rounds": rounds,
            "ratio_median": statistics.median(r["ratio"] for r in rounds),
            "goal_ratio": 0.8,
            "peak_temp_bytes": peak,
            "temp_bound_bytes": (workers + 2) * largest,
            "peak_within_bound": peak <= (workers + 2) * largest,
            "same_rows_every_round": all(r["same_rows"] for r in rounds),
            "unchanged_rerun_s": round(rerun_s, 2),
            "unchanged_rerun": {"scanned": rerun.scanned, "reused": rerun.reused},
        }
    text = json.dumps(result, indent=1)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
