"""Every evaluation set in one command, for one or more models side by side.

    python -m training.benchmark --model trained_models/screener-meso.keras \
        --model ../shared/anchors/mesonet-afchar/weights/MesoInception_DF.h5 \
        --shared ../shared --work /work/data --out runs/benchmark

Sets (crops are aligned once by `training.align` into --work, the same code the scan uses):
- DF validation: the MesoNet dataset's test split, aligned crops; frame and video ROC AUC.
- DFDC test groups: the DFDC faces whose group falls in `training.sources`' test share (never
  trained on or selected with); frame ROC AUC.
- FF++: each FaceForensics++ method against the youtube reals, and all methods; frame ROC AUC.
- celebdf-hard and videos-dev: the clips through the scan's own per-video unit and verdict
  (`screener.pipeline.crops_from_video`, `screener.verdict.aggregate`: what `screener scan`
  runs; the crops are found once and scored by each model): clips right at the model card's
  threshold and clip ROC AUC.
`ffpp/` and `celebdf-hard/` are evaluation only: no training, threshold or early stop uses them.

The clip-level aggregations (mean, the scan's; median; mean of the top quarter; share of faces
at or above the threshold) are compared on the clip sets and the DF validation videos.

Writes benchmark.json (every figure), benchmark.md (the tables) and scores per set to --out.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from screener.errors import ScreenerError

from . import metrics
from .data import FAKE, REAL, BatchStream, Sample, list_split

log = logging.getLogger(__name__)

CROSS_SETS = ("ffpp-all", "dfdc-test", "celebdf-hard")  # the selection rule's mean
AGGREGATIONS = ("mean", "median", "top-quarter mean", "share at or above threshold")


def aggregate(p: np.ndarray, how: str, threshold: float) -> float:
    p = np.sort(np.asarray(p, float))
    if how == "mean":
        return float(p.mean())
    if how == "median":
        return float(np.median(p))
    if how == "top-quarter mean":
        return float(p[-max(1, len(p) // 4):].mean())
    if how == "share at or above threshold":
        return float((p >= threshold).mean())
    raise ValueError(how)


def aligned(shared: Path, work: Path, name: str, no_face: str) -> Path:
    """The aligned copy of a ../shared dataset under work/, made on the first run; later runs
    only retry the images where no face was found (align_dataset resumes)."""
    from .align import align_dataset
    src, dst = shared / "data" / name, work / f"{Path(name).name}-aligned"
    dst.mkdir(parents=True, exist_ok=True)
    align_dataset(src, dst, no_face, progress=False)
    return dst


def crop_sets(shared: Path, work: Path) -> dict[str, list[Sample]]:
    """Frame-level sets: name -> samples (label 1 = fake)."""
    from .sources import Source, splits, _read_table, _stem_index
    df = aligned(shared, work, "mesonet-df", "resize")
    out = {"df-val": list_split(df, "validation")}
    out["dfdc-test"] = splits(Source("dfdc", aligned(shared, work, "wild-faces/dfdc", "skip")))["test"]
    ffpp = aligned(shared, work, "wild-faces/ffpp", "skip")
    images = _stem_index(ffpp)
    by_method: dict[str, list[Sample]] = {}
    for r in _read_table(ffpp / "metadata.csv"):
        p = images.get(str(Path(r["file"]).with_suffix("")))
        if p is not None:
            by_method.setdefault(r["method"], []).append(
                Sample(p, REAL if r["label"] == "real" else FAKE, None))
    reals = by_method.pop("youtube")
    for method, fakes in sorted(by_method.items()):
        out[f"ffpp-{method}"] = reals + fakes
    out["ffpp-all"] = reals + [s for f in by_method.values() for s in f]
    return out


def clip_sets(shared: Path) -> dict[str, list[tuple[Path, int]]]:
    """Clip-level sets: name -> [(clip, label)], labelled clips only."""
    out = {}
    for name, folder in (("celebdf-hard", shared / "data/wild-faces/celebdf-hard"),
                         ("videos-dev", shared / "data/videos-dev")):
        with open(folder / "labels.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["label"] in ("df", "real")]
        out[name] = [(folder / r["path"], FAKE if r["label"] == "df" else REAL) for r in rows]
    return out


def score_samples(scorer, samples: list[Sample]):
    stream = BatchStream(samples, batch_size=128, resize_mode="area")
    p = np.concatenate([scorer.predict(x) for x, _, _ in stream])
    return stream.kept, p


def frame_figures(kept, p, threshold: float, videos: bool = False) -> dict:
    y = np.array([s.label for s in kept])
    r = metrics.binary_report(y, p, threshold)
    out = {"n": r["n"], "roc_auc": r["roc_auc"], "accuracy": r["accuracy"], "eer": r["eer"]}
    if videos:
        _, vy, vs = metrics.video_scores([s.group for s in kept], y, p)
        v = metrics.binary_report(vy, vs, threshold)
        out["video"] = {"n": v["n"], "roc_auc": v["roc_auc"], "accuracy": v["accuracy"]}
    return out


def clip_figures(results: list[dict], threshold: float) -> dict:
    """Clips right (verdict = the scan's), clip ROC AUC over the clips with a score."""
    y = np.array([r["label"] for r in results])
    right = sum(r["verdict"] == ("FAKE" if r["label"] == FAKE else "REAL") for r in results)
    scored = [r for r in results if r["p_fake"] is not None]
    auc = metrics.binary_report([r["label"] for r in scored], [r["p_fake"] for r in scored],
                                threshold)["roc_auc"] if scored else None
    return {"n": len(y), "right": int(right), "roc_auc": auc,
            "no_verdict": len(results) - len(scored)}


def aggregation_table(groups: dict[str, list[tuple[int, np.ndarray]]], threshold: float) -> dict:
    """Per set, per aggregation: ROC AUC and accuracy at the threshold over its clips."""
    out = {}
    for name, clips in groups.items():
        clips = [(y, p) for y, p in clips if len(p)]
        ys = [y for y, _ in clips]
        out[name] = {}
        for how in AGGREGATIONS:
            s = [aggregate(p, how, threshold) for _, p in clips]
            t = 0.5 if how.startswith("share") else threshold  # a majority of faces
            r = metrics.binary_report(ys, s, t)
            out[name][how] = {"roc_auc": r["roc_auc"], "accuracy": r["accuracy"]}
    return out


def run(models: list[str], shared: Path, work: Path, out: Path, frames: int = 32) -> dict:
    from screener.pipeline import SampleOptions, crops_from_video
    from screener.scoring import load_model
    from screener.verdict import aggregate as verdict_of

    out.mkdir(parents=True, exist_ok=True)
    frame_sets = crop_sets(shared, work)
    clips = clip_sets(shared)
    options = SampleOptions(frames=frames)
    t0 = time.time()
    crops = {c: crops_from_video(c, options) for items in clips.values() for c, _ in items}
    print(f"faces of {len(crops)} clips found in {time.time() - t0:.0f} s", flush=True)
    report = {"models": {}, "sets": {k: len(v) for k, v in frame_sets.items()},
              "clips": {k: [str(c) for c, _ in v] for k, v in clips.items()}}
    for model in models:
        scorer = load_model(model)
        th = scorer.card.threshold
        fig, groups = {}, {}
        for name, samples in frame_sets.items():
            kept, p = score_samples(scorer, samples)
            fig[name] = frame_figures(kept, p, th, videos=name == "df-val")
            _write_scores(out / f"{Path(model).stem}-{name}.csv", [str(s.path) for s in kept],
                          [s.label for s in kept], p)
            if name == "df-val":
                by_video: dict[str, list] = {}
                for s, v in zip(kept, p):
                    by_video.setdefault(s.group, [s.label, []])[1].append(v)
                groups["df-val videos"] = [(y, np.array(v)) for y, v in by_video.values()]
        for name, items in clips.items():
            results = []
            for clip, label in items:
                video = crops[clip]
                p = scorer.predict(np.stack([c.crop for c in video.crops])) if video.crops \
                    else np.zeros(0, np.float32)
                r = verdict_of(video, p, model=scorer.card.name, threshold=th)
                results.append({"clip": clip.name, "label": label, "verdict": r.verdict,
                                "status": r.status, "p_fake": r.fake_score,
                                "faces": len(p)})
                groups.setdefault(name, []).append((label, np.asarray(p)))
            fig[name] = clip_figures(results, th)
            fig[name]["clips"] = results
        fig["cross-dataset mean AUC"] = float(np.mean([
            fig[k]["roc_auc"] for k in CROSS_SETS if fig[k]["roc_auc"] is not None]))
        fig["aggregations"] = aggregation_table(groups, th)
        report["models"][model] = {"name": scorer.card.name, "sha256": scorer.card.sha256,
                                   "threshold": th, "figures": fig}
        print(f"{model}: cross-dataset mean AUC {fig['cross-dataset mean AUC']:.4f}, "
              f"DF validation AUC {fig['df-val']['roc_auc']:.4f}", flush=True)
    (out / "benchmark.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "benchmark.md").write_text(to_markdown(report))
    return report


def _write_scores(path: Path, names, labels, p) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "p_fake"])
        w.writerows([n, y, f"{v:.6f}"] for n, y, v in zip(names, labels, p))


def _f(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def to_markdown(report: dict) -> str:
    models = list(report["models"].values())
    head = "| set | n | figure | " + " | ".join(m["name"] for m in models) + " |"
    lines = [head, "|" + " --- |" * (3 + len(models))]

    def row(label, n, what, get):
        vals = []
        for m in models:
            try:
                vals.append(get(m["figures"]))
            except (KeyError, TypeError):
                vals.append("—")
        lines.append(f"| {label} | {n} | {what} | " + " | ".join(vals) + " |")

    f0 = models[0]["figures"]
    row("DF validation (aligned crops)", f0["df-val"]["n"], "frame ROC AUC", lambda f: _f(f["df-val"]["roc_auc"]))
    row("DF validation videos", f0["df-val"]["video"]["n"], "video ROC AUC (mean)",
        lambda f: _f(f["df-val"]["video"]["roc_auc"]))
    row("DFDC test groups", f0["dfdc-test"]["n"], "frame ROC AUC", lambda f: _f(f["dfdc-test"]["roc_auc"]))
    for k in sorted(x for x in f0 if x.startswith("ffpp-") and x != "ffpp-all"):
        row(f"FF++ {k[5:]} vs youtube", f0[k]["n"], "frame ROC AUC", lambda f, k=k: _f(f[k]["roc_auc"]))
    row("FF++ all methods", f0["ffpp-all"]["n"], "frame ROC AUC", lambda f: _f(f["ffpp-all"]["roc_auc"]))
    for k in ("celebdf-hard", "videos-dev"):
        row(k, f0[k]["n"], "clips right (scan verdict)",
            lambda f, k=k: f"{f[k]['right']} of {f[k]['n']}")
        row(k, f0[k]["n"], "clip ROC AUC", lambda f, k=k: _f(f[k]["roc_auc"]))
    row("cross-dataset mean", "", "mean AUC: FF++ all, DFDC test, celebdf-hard clips",
        lambda f: _f(f["cross-dataset mean AUC"]))
    lines += ["", "Clip-level aggregation (ROC AUC / accuracy at the threshold; share: at least "
              "half the faces at or above it):", ""]
    lines += ["| model | set | " + " | ".join(AGGREGATIONS) + " |", "|" + " --- |" * (2 + len(AGGREGATIONS))]
    for m in models:
        for name, per in m["figures"]["aggregations"].items():
            lines.append(f"| {m['name']} | {name} | " + " | ".join(
                f"{_f(per[h]['roc_auc'])} / {_f(per[h]['accuracy'])}" for h in AGGREGATIONS) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.benchmark", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True,
                    help="a model file (repeat to compare: .keras, or published .h5) or a "
                         "shipped model's name (`screener models`)")
    ap.add_argument("--shared", type=Path, default=Path("../shared"),
                    help="the read-only data folder (default ../shared)")
    ap.add_argument("--work", type=Path, default=Path("runs/data"),
                    help="where aligned copies of the crop sets are made once (default runs/data)")
    ap.add_argument("--out", type=Path, default=Path("runs/benchmark"), help="output folder")
    ap.add_argument("--frames", type=int, default=32, help="frames sampled per clip (the scan's)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not (a.shared / "data").is_dir():
        print(f"error: {a.shared}/data not found (--shared)", file=sys.stderr)
        return 2
    try:
        report = run(a.model, a.shared, a.work, a.out, a.frames)
    except (ScreenerError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(to_markdown(report))
    print(f"wrote {a.out}/benchmark.json, benchmark.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
