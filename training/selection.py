"""The selection rule: which trained model ships, read from the training sources' selection
carves only (docs/model.md, "Selection", wrote it down before the runs it judges).

    python -m training.selection --model runs/A/best.keras --model runs/B/best.keras \
        --model trained_models/screener-meso.keras --shared ../shared --fetched data/fetched \
        --work data --out runs/selection

The carves, never trained on and never test sets:
- `df-val`: the MesoNet DF validation split (aligned crops); bootstrapped by video.
- `dfdc-select`: the DFDC selection groups of `training.prepare`'s full DFDC tree (the hash
  split of `training.sources`); bootstrapped by group (a real person and the fakes made from it).
- `ffpp-select`: FF++ train split's selection carve (`training.prepare`); bootstrapped by group of
  near-duplicates; its four methods against its reals are reported too.

Each carve's frame ROC AUC has a standard error from a group bootstrap; the rule's score is the
mean AUC weighted by 1 / SE^2 (a noisy carve counts less). A model is eligible when its DF
validation AUC is at least DF_FLOOR. The eligible model with the highest score wins; a cheaper
one (more faces per second under LiteRT) within TIE of it wins instead. The test sets
(`training.benchmark`) are reported once for the chosen models and choose nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .data import Sample, list_split

CARVES = ("df-val", "dfdc-select", "ffpp-select")
DF_FLOOR = 0.92  # the floor; above the published MesoInception_DF's 0.898 on these crops
TIE = 0.005
BOOTSTRAP = 200


def carves(shared: Path, fetched: Path, work: Path) -> dict[str, list[Sample]]:
    from .benchmark import aligned
    from .sources import Source, splits
    out = {"df-val": list_split(aligned(shared, work, "mesonet-df", "resize"), "validation")}
    for name in ("dfdc", "ffpp"):
        root = fetched / f"{name}-aligned"
        if root.is_dir():
            out[f"{name}-select"] = splits(Source(name, root))["select"]
    return out


def bootstrap_se(y: np.ndarray, p: np.ndarray, groups: list[str], n: int = BOOTSTRAP,
                 seed: int = 0) -> float:
    """Standard error of the ROC AUC when whole groups are resampled."""
    from sklearn.metrics import roc_auc_score
    names, idx = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(idx == g) for g in range(len(names))]
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n):
        rows = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        if len(set(y[rows])) == 2:
            aucs.append(roc_auc_score(y[rows], p[rows]))
    return float(np.std(aucs, ddof=1))


def faces_per_second(model_path: str, n: int = 64, rounds: int = 3) -> float | None:
    """The model under LiteRT on one thread, best of `rounds` over n crops (None without LiteRT)."""
    from screener import lite
    from screener.scoring import load_model
    if not lite.available():
        return None
    net = lite.LiteNet(lite.convert(load_model(model_path).model), threads=1)
    return float(lite.faces_per_second([net], n, rounds).max())


def figures(model_path: str, sets: dict[str, list[Sample]]) -> dict:
    from screener.scoring import load_model

    from . import metrics
    from .benchmark import score_samples
    scorer = load_model(model_path)
    out = {}
    for name, samples in sets.items():
        kept, p = score_samples(scorer, samples)
        y = np.array([s.label for s in kept])
        groups = [s.group for s in kept]
        out[name] = {"n": len(y), "groups": len(set(groups)),
                     "roc_auc": metrics.binary_report(y, p, 0.5)["roc_auc"],
                     "se": bootstrap_se(y, p, groups)}
        if name == "ffpp-select":  # each method against the carve's reals
            method = np.array([Path(s.path).stem.split("_roi_")[0] for s in kept])
            real = y == 0
            out[name]["by_method"] = {
                m: metrics.binary_report(np.r_[y[real], y[method == m]],
                                         np.r_[p[real], p[method == m]], 0.5)["roc_auc"]
                for m in sorted(set(method[~real]))}
    return out


def score(fig: dict) -> float:
    w = {k: 1 / fig[k]["se"] ** 2 for k in CARVES if k in fig and fig[k]["se"] > 0}
    return float(sum(fig[k]["roc_auc"] * v for k, v in w.items()) / sum(w.values()))


def choose(rows: dict[str, dict]) -> str | None:
    """The model the rule picks among {name: {"score", "df-val": {...}, "faces_per_s"}}."""
    ok = {k: r for k, r in rows.items() if r["df-val"]["roc_auc"] >= DF_FLOOR}
    if not ok:
        return None
    best = max(ok, key=lambda k: ok[k]["score"])
    near = [k for k, r in ok.items() if r["score"] >= ok[best]["score"] - TIE]
    return max(near, key=lambda k: (ok[k].get("faces_per_s") or 0, ok[k]["score"]))


def to_markdown(rows: dict[str, dict], chosen: str | None) -> str:
    lines = ["| model | DF val | DFDC select | FF++ select (DF / F2F / FS / NT) | score | "
             "LiteRT faces/s (1 thread) |", "| --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        def cell(k):
            return f"{r[k]['roc_auc']:.3f} ± {r[k]['se']:.3f}" if k in r else "-"
        by = r.get("ffpp-select", {}).get("by_method", {})
        methods = " / ".join(f"{by[m]:.3f}" for m in sorted(by))
        mark = "**" if name == chosen else ""
        fps = f"{r['faces_per_s']:.0f}" if r.get("faces_per_s") else "-"
        lines.append(f"| {mark}{name}{mark} | {cell('df-val')} | {cell('dfdc-select')} | "
                     f"{cell('ffpp-select')} ({methods}) | {r['score']:.4f} | {fps} |")
    return "\n".join(lines) + f"\n\nChosen by the rule: {chosen or 'none (no model is eligible)'}\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.selection", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True,
                    help="a model file or a shipped model's name (repeat); NAME=PATH names "
                         "its row (default: the file's folder, a shipped model's name)")
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--fetched", type=Path, default=Path("data/fetched"),
                    help="training.prepare's output, aligned (dfdc-aligned, ffpp-aligned)")
    ap.add_argument("--work", type=Path, default=Path("data"), help="aligned copies (benchmark's)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--previous", type=Path, action="append", default=[],
                    help="an earlier run's selection.json: its rows join this one's (the same "
                         "carves: the same --shared, --fetched and --work)")
    a = ap.parse_args(argv)
    sets = carves(a.shared, a.fetched, a.work)
    rows = {}
    for earlier in a.previous:
        old = json.loads(earlier.read_text())["rows"]
        for name, r in old.items():
            # Rows of other carves would be compared with these as if alike.
            if any(r.get(k, {}).get("n") != len(v) for k, v in sets.items()):
                raise SystemExit(f"error: {earlier}: row {name} was scored on other carves")
        rows.update(old)
    for spec in a.model:
        name, _, path = spec.rpartition("=") if "=" in spec else (
            Path(spec).parent.name or spec, "", spec)  # a shipped name has no folder
        fig = figures(path, sets)
        rows[name] = {"path": path, **fig, "score": score(fig), "faces_per_s": faces_per_second(path)}
        print(f"{name}: score {rows[name]['score']:.4f} "
              + " ".join(f"{k} {fig[k]['roc_auc']:.3f}±{fig[k]['se']:.3f}" for k in fig), flush=True)
    chosen = choose(rows)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "selection.json").write_text(json.dumps({"rows": rows, "chosen": chosen,
                                                      "df_floor": DF_FLOOR, "tie": TIE},
                                                     indent=1) + "\n")
    (a.out / "selection.md").write_text(to_markdown(rows, chosen))
    print(to_markdown(rows, chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
