"""Scan throughput against the decode limit and a naive baseline, all in one run on one machine.

    python bench/throughput.py [--clips 8] [--seconds 10] [--short-clips 200] [--rounds 3] [--out FILE]

Makes its own H.264 clips with faces (1080p and 720p, 30 fps, a keyframe every 2 s; and
`--short-clips` small ones for the memory check), adds ../shared/data/videos-dev when present,
and measures, on the same clips and cores, in this order (decode-only, the scan and its variants
in `--rounds` interleaved rounds, reported with their medians: this machine's speed drifts by
tens of percent from one minute to the next, so only figures from the same round compare):

- decode-only: the same sampled frames (32 per video) decoded by the same number of worker
  processes, nothing else: the limit of a CPU box. Twice: each decoder with FFmpeg's own
  threads, and with the scan's setting (video.set_decode_threads); the faster is the limit;
- scan: the pipelined local engine at default settings (workers = cores, batch 256, the model
  under LiteRT on a CPU);
- naive: one process that read()s every frame, and for each sampled one runs detection,
  alignment and the model on that one face, in turn (the reference). Its model runs under
  Keras (the CPU twin, XLA), as in the rounds before LiteRT, so the reference stays what it
  was; the same pass with the model under LiteRT is reported too;
- stages: time per stage from an instrumented sequential pass;
- in every round, the scan again with one thing changed: the model under Keras as its CPU
  twin (screener/fast_inception.py) and as saved; every sampled frame searched whole
  (`research_every=0`: no face followed from one sampled frame to the next); the largest
  face of each frame only (`--largest-face`: no people, the cost of judging everyone); Meso-4 instead
  of the default model (the model's share of the gap); with `--baseline-model`, that model
  instead of the default (a new default against the one it replaces);
- the model alone, uint8 batches of 32: under LiteRT (as the scan runs it), and under Keras
  as its CPU twin and as saved;
- memory: peak RSS of `screener scan` (a subprocess) and its workers on 50 and on all the short
  clips (it must not grow with their number);
- incremental: the same CLI rerun on the unchanged folder against its full scan.

Worker pools are started and warmed before they are timed (start-up is paid once per worker
and reported on its own). The model is the shipped default when present, else an untrained
Meso-4 of the same size (speed does not depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from screener import synth, video  # noqa: E402
from screener.options import EngineOptions, SampleOptions
from screener.pipeline import find_faces  # noqa: E402

SHARED = ROOT.parent / "shared"


# --- clips -------------------------------------------------------------------------------

def make_clips(folder: Path, n: int, seconds: float) -> list[str]:
    out = []
    specs = [(1920, 1080, 260), (1280, 720, 160)]
    for i in range(n):
        w, h, face = specs[i % 2]
        name = ["collins", "hopper"][i // 2 % 2]
        p = synth.face_clip(folder / f"clip{i:02d}_{h}p.mp4", w, h, int(30 * seconds), fps=30,
                            faces=[synth.Placement(name, w // 4 + 40 * i, h // 8, face)],
                            seed=i, drift_px=1, options={"g": "60"})
        out.append(str(p))
    return out


def make_short_clips(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = synth.face_clip(folder / f"short{i:03d}.mp4", 320, 240, 16, fps=8,
                            faces=[synth.Placement("collins", 60 + i % 40, 20, 70)], seed=i % 7)
        out.append(str(p))
    return out


# --- memory ------------------------------------------------------------------------------

def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids + [g for k in kids for g in _children(k)]


def cpu_seconds(pids) -> float:
    """User + system CPU time so far of these processes (all their threads)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):  # the process has ended
            pass
    return total


class PeriodicSampler:
    """Calls `sample()` every 50 ms in a thread while the `with` block runs (peaks, say)."""

    def __init__(self):
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


class RssSampler(PeriodicSampler):
    """Peak RSS of this process (unless `children_only`) plus all its descendants."""

    def __init__(self, children_only: bool = False):
        super().__init__()
        self.peak_kb = 0
        self.children_only = children_only
        # Processes already running (earlier rounds' worker pools) are not the measured command's.
        self.before = set(_children(os.getpid())) if children_only else set()

    def sample(self):
        me = os.getpid()
        total = (0 if self.children_only else _rss_kb(me)) + sum(
            _rss_kb(c) for c in _children(me) if c not in self.before)
        self.peak_kb = max(self.peak_kb, total)


# --- the measured passes -----------------------------------------------------------------

def _decode_only(path: str) -> int:
    return sum(1 for _ in video.sample_frames(path, frames=32))


def _noop(_=None) -> None:
    return None


def _decoder_init(threads: int | None) -> None:
    import cv2
    cv2.setNumThreads(1)
    video.set_decode_threads(threads)


def decode_only(paths, workers: int, threads: int | None) -> tuple[float, int, float]:
    """(seconds, frames decoded, CPU seconds the worker processes spent), each FFmpeg decoder
    with `threads` threads (None: FFmpeg's default)."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_decoder_init,
                             initargs=(threads,)) as pool:
        list(pool.map(_noop, range(workers)))  # warm: processes started
        kids = _children(os.getpid())
        cpu = cpu_seconds(kids)
        t = time.perf_counter()
        frames = sum(pool.map(_decode_only, paths))
        return time.perf_counter() - t, frames, cpu_seconds(kids) - cpu


def scan(engine, paths) -> tuple[float, list]:
    t = time.perf_counter()
    results = list(engine.run(paths))
    return time.perf_counter() - t, results


def warm_scan(scorer, paths, workers: int, options: SampleOptions = SampleOptions()) -> float:
    """Seconds for a scan of `paths` with a fresh engine, its model and workers warmed first."""
    from screener.engines.local import LocalEngine
    scorer.predict(np.zeros((1, 256, 256, 3), np.uint8))
    with LocalEngine(scorer, options, EngineOptions(workers=workers)) as engine:
        list(engine.run(paths[:workers]))
        return scan(engine, paths)[0]


def naive(paths, scorer, detector) -> float:
    import cv2

    from screener import align
    t = time.perf_counter()
    for p in paths:
        info = video.probe(p)
        want = set(video.targets(info.frame_count, info.fps, 32))
        cap = cv2.VideoCapture(p)
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if i in want:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                found = detector.detect(rgb, "largest")
                if found:
                    scorer.predict(align.align(rgb, found[0].keypoints)[None])
            i += 1
        cap.release()
    return time.perf_counter() - t


def stages(paths, scorer, detector) -> dict:
    from screener import align
    tot = {"decode_s": 0.0, "detect_s": 0.0, "align_s": 0.0, "infer_s": 0.0}
    n_frames = n_faces = 0
    for p in paths:
        t = time.perf_counter()
        frames = list(video.sample_frames(p, frames=32))
        tot["decode_s"] += time.perf_counter() - t
        n_frames += len(frames)
        crops, prev = [], []
        for n, f in enumerate(frames):
            t = time.perf_counter()
            found = find_faces(detector, f.rgb, SampleOptions(), n, prev)
            tot["detect_s"] += time.perf_counter() - t
            prev = [x for x in found if x.size_px >= SampleOptions().min_face]
            t = time.perf_counter()
            crops += [align.align(f.rgb, x.keypoints) for x in prev]
            tot["align_s"] += time.perf_counter() - t
        if crops:
            t = time.perf_counter()
            scorer.predict(np.stack(crops))
            tot["infer_s"] += time.perf_counter() - t
            n_faces += len(crops)
    out = {k: round(v, 2) for k, v in tot.items()}
    out.update(frames=n_frames, faces=n_faces,
               decode_frames_per_s=round(n_frames / tot["decode_s"], 1),
               detect_frames_per_s=round(n_frames / tot["detect_s"], 1),
               align_faces_per_s=round(n_faces / max(tot["align_s"], 1e-9), 1),
               infer_faces_per_s=round(n_faces / max(tot["infer_s"], 1e-9), 1))
    return out


def model_alone(scorer, n: int = 256) -> dict:
    """faces/s and CPU ms a face of the model by itself on random crops, batches of 32: as
    saved and as its CPU twin under Keras (XLA), and as the scan runs it under LiteRT."""
    from screener import lite
    from screener.fast_inception import cpu_twin
    x = np.random.default_rng(0).integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)
    out = {}
    twin = cpu_twin(scorer.model)
    nets = {"keras_as_saved": scorer.model, "keras_cpu_twin": twin,
            "litert": lite.load(scorer.card.sha256, lambda: twin or scorer.model)}
    for name, net in nets.items():
        if net is None:
            continue
        if name.startswith("keras"):
            net.compile(jit_compile=True)
        net.predict_on_batch(x[:32])  # compile
        t, c = time.perf_counter(), time.process_time()
        for i in range(0, n, 32):
            net.predict_on_batch(x[i:i + 32])
        out[f"{name}_faces_per_s"] = round(n / (time.perf_counter() - t), 1)
        out[f"{name}_cpu_ms_per_face"] = round(1000 * (time.process_time() - c) / n, 2)
    return out


def cli_scan(folder: Path, out: Path, model: str | None, extra=()) -> tuple[float, int]:
    """`screener scan FOLDER --out OUT` as a user runs it: (seconds, peak RSS MB of the scan
    process and its workers)."""
    import subprocess
    cmd = [sys.executable, "-m", "screener", "scan", str(folder), "--out", str(out), "-q",
           *(["--model", model] if model else []), *extra]
    with RssSampler(children_only=True) as rss:
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        secs = time.perf_counter() - t
    return round(secs, 2), round(rss.peak_kb / 1024)


def memory_and_incremental(short: list[str], tmp: Path, model: str | None) -> dict:
    """Peak RSS of the CLI on 50 and on all short clips (it must not grow with their number),
    then the cron case: an unchanged rerun against the full scan (screener.state)."""
    import shutil
    few = tmp / "few"
    few.mkdir()
    for p in short[:50]:
        shutil.copy(p, few)
    s50, rss50 = cli_scan(few, tmp / "few.csv", model, ["--no-state"])
    full_s, rss_all = cli_scan(Path(short[0]).parent, tmp / "all.csv", model)
    first = (tmp / "all.csv").read_bytes()
    rerun_s, _ = cli_scan(Path(short[0]).parent, tmp / "all.csv", model)
    return {"peak_rss_mb_50_clips": rss50, f"peak_rss_mb_{len(short)}_clips": rss_all,
            "scan_50_clips_s": s50, f"full_scan_{len(short)}_clips_s": full_s,
            "unchanged_rerun_s": rerun_s, "rerun_over_full": round(rerun_s / full_s, 4),
            "report_identical": (tmp / "all.csv").read_bytes() == first,
            "note": "CLI subprocesses (interpreter start included), default settings"}


def load_scorer(tmp: Path, **runtime):
    """The shipped model (`runtime`, `cpu_twin`: as scoring.load_model takes them)."""
    from screener import nets, scoring
    try:
        return scoring.load_model(**runtime), "shipped default model"
    except Exception:
        m = nets.build("meso4")
        m.save(tmp / "untrained.keras")
        return (scoring.load_model(tmp / "untrained.keras", **runtime),
                "untrained Meso-4 (no default model found)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=8, help="generated 1080p/720p clips")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--short-clips", type=int, default=200)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of decode-only and scan")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/throughput.json")
    ap.add_argument("--baseline-model", type=Path, default=None,
                    help="also scan with this model file in every round (e.g. the previous "
                         "default: git show REV:trained_models/screener-meso.keras > prev.keras) "
                         "and report the default's speed against it")
    args = ap.parse_args()

    from screener.engines.local import LocalEngine
    from screener.engines.workers import default_workers
    from screener.detect import FaceDetector

    workers = args.workers or default_workers()
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                      f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB",
           "workers": workers}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        paths = make_clips(tmp, args.clips, args.seconds)
        dev = sorted(str(p) for p in (SHARED / "data/videos-dev").glob("*.mp4"))
        paths += dev
        res["clips"] = {"generated": args.clips, "seconds_each": args.seconds,
                        "videos_dev": len(dev), "make_s": round(time.perf_counter() - t, 1)}
        scorer, res["model"] = load_scorer(tmp)
        scorer.predict(np.zeros((1, 256, 256, 3), np.uint8))  # load and trace once

        # This machine's speed drifts by tens of percent between minutes, so everything compared
        # runs in interleaved rounds; ratios are taken within a round, figures are medians. The
        # decode limit is measured both ways: FFmpeg's own threads, and the scan's setting
        # (video.set_decode_threads); ratio (a) is taken against the faster of the two.
        from screener import nets, scoring
        from screener.engines.workers import decode_threads
        keras_twin = load_scorer(tmp, runtime="keras")[0]
        # The same scan with one thing changed, in every round: the model under Keras (its CPU
        # twin; as saved), every sampled frame searched whole (no face followed from the
        # previous one), and Meso-4 (under LiteRT) instead of the default model.
        variants = [("keras_cpu_twin", keras_twin, SampleOptions())]
        if scorer.card.arch == "mesoinception4":
            plain = load_scorer(tmp, runtime="keras", cpu_twin=False)[0]
            variants.append(("keras_as_saved", plain, SampleOptions()))
        variants.append(("without_tracking", scorer, SampleOptions(research_every=0)))
        # Every person judged (the default) against the largest face of each frame only.
        variants.append(("largest_face", scorer, SampleOptions(largest_face=True)))
        nets.build("meso4").save(tmp / "meso4.keras")
        variants.append(("meso4", scoring.load_model(tmp / "meso4.keras"), SampleOptions()))
        if args.baseline_model:
            variants.append(("baseline_model", scoring.load_model(args.baseline_model), SampleOptions()))
        rounds = []
        for k in range(args.rounds):
            one = {}
            one["decode_only_s"], n, one["decode_cpu_s"] = decode_only(paths, workers, decode_threads(workers))
            one["decode_only_ffmpeg_threads_s"], _, one["decode_ffmpeg_threads_cpu_s"] = \
                decode_only(paths, workers, None)
            one["decode_limit_s"] = min(one["decode_only_s"], one["decode_only_ffmpeg_threads_s"])
            with LocalEngine(scorer, SampleOptions(), EngineOptions(workers=workers)) as engine:
                t = time.perf_counter()
                list(engine.run(paths[:workers]))  # start and warm the workers
                if k == 0:
                    res["worker_startup_and_warmup_s"] = round(time.perf_counter() - t, 2)
                me, kids = os.getpid(), _children(os.getpid())
                cpu = cpu_seconds([me]), cpu_seconds(kids)
                with RssSampler() as rss:
                    one["scan_s"], results = scan(engine, paths)
                # Both passes keep the cores busy: CPU seconds say where the extra time goes.
                one["scan_main_cpu_s"] = cpu_seconds([me]) - cpu[0]
                one["scan_workers_cpu_s"] = cpu_seconds(kids) - cpu[1]
            one["scan_peak_rss_mb"] = rss.peak_kb / 1024
            one["ratio_a"] = one["decode_limit_s"] / one["scan_s"]
            for name, other, opts in variants:
                one[f"scan_{name}_s"] = warm_scan(other, paths, workers, opts)
                one[f"ratio_a_{name}"] = one["decode_limit_s"] / one[f"scan_{name}_s"]
            det = FaceDetector()
            one["naive_s"] = naive(paths, keras_twin, det)
            one["naive_litert_s"] = naive(paths, scorer, det)
            det.close()
            one["ratio_b"] = one["naive_s"] / one["scan_s"]
            one["ratio_b_naive_litert"] = one["naive_litert_s"] / one["scan_s"]
            rounds.append({key: round(v, 3) for key, v in one.items()})
            print(json.dumps(rounds[-1]), flush=True)
        res["rounds"] = rounds
        med = {key: round(float(np.median([r[key] for r in rounds])), 3) for key in rounds[0]}
        res["median"] = med
        res["decode_only_s"], res["decode_limit_s"], res["scan_s"] = \
            med["decode_only_s"], med["decode_limit_s"], med["scan_s"]
        res["sampled_frames"] = n
        res["cpu_s"] = {"decode_only_workers": med["decode_cpu_s"],
                        "decode_only_workers_ffmpeg_threads": med["decode_ffmpeg_threads_cpu_s"],
                        "scan_workers": med["scan_workers_cpu_s"],
                        "scan_main_process": med["scan_main_cpu_s"],
                        "cores_busy_in_scan": round((med["scan_main_cpu_s"] + med["scan_workers_cpu_s"])
                                                    / med["scan_s"], 2)}
        res["scan_peak_rss_mb"] = round(max(r["scan_peak_rss_mb"] for r in rounds))
        faces = sum(r.faces_scored for r in results)
        res["scan"] = {"videos_per_s": round(len(paths) / res["scan_s"], 2),
                       "sampled_frames_per_s": round(n / res["scan_s"], 1),
                       "faces_per_s": round(faces / res["scan_s"], 1),
                       "statuses": {s: sum(r.status == s for r in results)
                                    for s in {r.status for r in results}}}
        res["ratio_a_scan_vs_decode_only"] = med["ratio_a"]
        for name, _, _ in variants:
            res[f"ratio_a_{name}"] = med[f"ratio_a_{name}"]
        # above 1: judging every person costs that much more scan time than --largest-face
        res["people_vs_largest_face_time"] = round(float(np.median(
            [r["scan_s"] / r["scan_largest_face_s"] for r in rounds])), 3)
        res["model_runtime"] = scorer.runtime
        if args.baseline_model:
            res["baseline_model"] = str(args.baseline_model)
            # above 1: the default scans faster than the baseline model (medians of per-round ratios)
            res["speed_vs_baseline_model"] = round(float(np.median(
                [r["scan_baseline_model_s"] / r["scan_s"] for r in rounds])), 3)
        res["naive_s"], res["naive_litert_s"] = med["naive_s"], med["naive_litert_s"]
        res["ratio_b_scan_vs_naive"] = med["ratio_b"]
        res["ratio_b_scan_vs_naive_litert"] = med["ratio_b_naive_litert"]
        det = FaceDetector()
        res["stages_sequential"] = stages(paths, scorer, det)
        res["model_alone"] = model_alone(scorer)
        if args.short_clips:
            short = make_short_clips(tmp / "short", args.short_clips)
            model_path = None if res["model"].startswith("shipped") else str(tmp / "untrained.keras")
            res["memory_and_incremental"] = memory_and_incremental(short, tmp, model_path)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
