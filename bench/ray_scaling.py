"""The Ray engine against the local engine, and over 1, 2 (and 3) Ray nodes, on one machine.

    python bench/ray_scaling.py [--clips 16] [--seconds 4] [--frames 16] [--nodes 1,2] [--out FILE]

Makes its own H.264 clips with a face (640x360, 30 fps) and measures, in one run:

- overhead: the same clips through the local engine (workers = cores) and through the Ray
  engine on a one-node Ray with as many CPUs, each warmed first (worker processes started,
  detector and model loaded); Ray's start-up and the actor's model load are timed apart;
- scaling: a local cluster (ray.cluster_utils.Cluster) of 1, 2, ... nodes of one CPU each:
  videos/s, and on which nodes the tasks ran. On a 2-core machine 2 nodes is the ceiling;
- backpressure: the 2-node cluster with scoring made slower than decoding (each batch sleeps):
  the object store's peak (Ray's own store stats, sampled every 50 ms) against the crops the
  engine held alive, and against all the crops of the run (the clips three times, batches of 16
  that each sleep 0.25 s);
- stages: decode/detect/align/infer cost per frame from bench/throughput.py's instrumented
  sequential pass, for the README's estimate for N CPU nodes and M GPUs.

The machine is shared: the load average before and after each part is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from screener import synth  # noqa: E402
from screener.engines.ray import RayEngine, ScoringActor  # noqa: E402
from screener.options import EngineOptions, SampleOptions  # noqa: E402
from throughput import PeriodicSampler  # noqa: E402


def make_clips(folder: Path, n: int, seconds: float) -> list[str]:
    out = []
    for i in range(n):
        p = synth.face_clip(folder / f"clip{i:02d}.mp4", 640, 360, int(30 * seconds), fps=30,
                            faces=[synth.Placement(["collins", "hopper"][i % 2], 160 + 5 * i,
                                                   40, 120)],
                            seed=i, drift_px=1, options={"g": "60"})
        out.append(str(p))
    return out


def load() -> float:
    return round(os.getloadavg()[0], 2)


class StoreSampler(PeriodicSampler):
    """Peak bytes in the Ray object store, all nodes together."""

    def __init__(self):
        super().__init__()
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address
        import ray
        self._state = get_state_from_address(ray.get_runtime_context().gcs_address)
        self._reply = get_memory_info_reply
        self.peak_bytes = 0
        self.spilled_bytes = 0

    def sample(self):
        try:
            st = self._reply(self._state).store_stats
        except Exception:  # the cluster is going down
            return
        self.peak_bytes = max(self.peak_bytes, st.object_store_bytes_used)
        self.spilled_bytes = max(self.spilled_bytes, st.spilled_bytes_total)


class SlowActor(ScoringActor):
    """Scoring slower than decoding: each batch also sleeps."""
    delay_s = 0.25

    def score(self, *crops):
        time.sleep(self.delay_s)
        return super().score(*crops)


def timed_runs(engine, paths, warm) -> dict:
    t = time.perf_counter()
    list(engine.run(warm))  # start workers, load detector and model, trace the graph
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    results = list(engine.run(paths))
    s = time.perf_counter() - t
    return {"warmup_s": round(warm_s, 2), "scan_s": round(s, 2),
            "videos_per_s": round(len(paths) / s, 3),
            "statuses": {k: sum(r.status == k for r in results) for k in {r.status for r in results}},
            "_results": results}


def overhead(scorer, opts, paths, warm, cpus) -> dict:
    import ray
    from screener.engines.local import LocalEngine
    out = {"load_before": load()}
    with LocalEngine(scorer, opts, EngineOptions(workers=cpus)) as engine:
        local = timed_runs(engine, paths, warm)
    t = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - t
    with RayEngine(scorer, opts, EngineOptions("ray")) as engine:
        t = time.perf_counter()
        engine._connect()
        actor_s = time.perf_counter() - t
        dist = timed_runs(engine, paths, warm)
    ray.shutdown()
    same = all(a.row().keys() == b.row().keys() and a.status == b.status and
               a.path == b.path and (a.fake_score is None or abs(a.fake_score - b.fake_score) < 1e-4)
               for a, b in zip(local.pop("_results"), dist.pop("_results")))
    out.update(local=local, ray=dist, ray_init_s=round(ray_start_s, 2),
               actor_start_and_model_load_s=round(actor_s, 2),
               ray_over_local_scan_time=round(dist["scan_s"] / local["scan_s"], 3),
               same_results=same, load_after=load())
    return out


def scaling(scorer, opts, paths, warm, nodes: int, slow: bool = False,
            batch_size: int = 256) -> dict:
    import ray
    from ray.cluster_utils import Cluster
    t = time.perf_counter()
    c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, include_dashboard=False))
    for _ in range(nodes - 1):
        c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    start_s = time.perf_counter() - t
    out = {"nodes": nodes, "load_before": load(), "cluster_start_s": round(start_s, 2)}
    try:
        engine = RayEngine(scorer, opts, EngineOptions("ray", batch_size=batch_size))
        if slow:
            engine.actor_class = SlowActor
        with engine:
            list(engine.run(warm))
            engine.stats.nodes.clear()
            engine.stats.peak_crops_held = 0
            with StoreSampler() as store:
                res = timed_runs(engine, paths, [])
            res.pop("_results")
            st = engine.stats
            crop_mb = 256 * 256 * 3 / 2**20
            out.update(res, tasks_per_node=sorted(st.nodes.values(), reverse=True),
                       retries=st.retries, batches=st.batches,
                       object_store_peak_mb=round(store.peak_bytes / 2**20, 1),
                       object_store_spilled_mb=round(store.spilled_bytes / 2**20, 1),
                       engine_peak_crops_held=st.peak_crops_held,
                       engine_peak_crops_mb=round(st.peak_crop_mb, 1),
                       all_crops_of_run_mb=round(len(paths) * opts.frames * crop_mb, 1))
            out.pop("warmup_s", None)
    finally:
        ray.shutdown()
        c.shutdown()
    out["load_after"] = load()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--nodes", default="1,2", help="cluster sizes to measure")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: "
                                               "overhead,scaling,backpressure,stages")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/ray_scaling.json")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from throughput import load_scorer, stages
    from screener.engines.workers import default_workers
    cpus = default_workers()
    res = {"machine": f"{os.cpu_count()} cores", "cpus": cpus, "load_at_start": load()}
    opts = SampleOptions(frames=args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        paths = make_clips(tmp, args.clips + 2, args.seconds)
        warm, paths = paths[:2], paths[2:]
        res["clips"] = {"n": len(paths), "size": "640x360", "seconds": args.seconds,
                        "frames_sampled": args.frames, "make_s": round(time.perf_counter() - t, 1)}
        scorer, res["model"] = load_scorer(tmp)
        if "overhead" not in skip:
            res["overhead_one_node"] = overhead(scorer, opts, paths, warm, cpus)
            print(json.dumps(res["overhead_one_node"]), flush=True)
        if "scaling" not in skip:
            res["scaling"] = []
            for n in map(int, args.nodes.split(",")):
                res["scaling"].append(scaling(scorer, opts, paths, warm, n))
                print(json.dumps(res["scaling"][-1]), flush=True)
        if "backpressure" not in skip:
            # Small batches that each sleep, over three times the clips: scoring is the
            # bottleneck for most of the run, so decoded crops would pile up without a bound.
            res["backpressure_slow_scoring"] = dict(
                scaling(scorer, opts, paths * 3, warm, 2, slow=True, batch_size=16),
                scoring_delay_per_batch_s=SlowActor.delay_s, batch_size=16)
            print(json.dumps(res["backpressure_slow_scoring"]), flush=True)
        if "stages" not in skip:
            from screener.detect import FaceDetector
            st = stages(paths[:6], scorer, FaceDetector())
            n_frames, n_faces = st["frames"], max(st["faces"], 1)
            res["stages_sequential"] = dict(
                st, ms_per_frame={k[:-2]: round(1000 * st[k] / n_frames, 2)
                                  for k in ("decode_s", "detect_s")},
                ms_per_face={k[:-2]: round(1000 * st[k] / n_faces, 2)
                             for k in ("align_s", "infer_s")})
            print(json.dumps(res["stages_sequential"]), flush=True)
    res["load_at_end"] = load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
