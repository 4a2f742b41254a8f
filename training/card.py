"""Finish a model's card from what measured it: the benchmark, the selection rule, the cost.

    python -m training.card --card RUN/model.json --name screener-meso4-spectrum \
        --benchmark bench-out/benchmark.json --selection runs/selection/selection.json \
        --row s2-r6-spec --cost bench/results/model_cost.json --cost-key RUN/model.keras \
        --prepare data/fetched/prepare.json --out trained_models/screener-meso.json

Writes the card's `metrics.benchmark` (what the HTML report shows), `summary` and `cost` (what
`screener models` lists), `selection` (the rule's table and choice) and `training_sources`
(each source with the copy's repository, commit and terms, from `training.prepare`'s record).
Figures are copied from those files, never typed in.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# What each training source is and under which terms, by the names training.prepare and the
# benchmark use. The commit of a fetched copy comes from prepare.json.
SOURCES = {
    "df": {"data": "MesoNet Deepfake dataset, train split (Afchar et al., WIFS 2018), re-aligned "
                   "with python -m training.align", "copy": "../shared/data/mesonet-df",
           "terms": "research use, as published by the MesoNet authors; not redistributed"},
    "dfdc": {"data": "DFDC training faces, one crop per video, every video but the excluded "
                     "people (../shared/data/wild-faces/dfdc-excluded.txt); Kaggle 'deepfake-faces'",
             "copy": "github.com/i-Shreyansh/DeepFake-Detection (faces_224/, metadata.csv)",
             "terms": "the Deepfake Detection Challenge's research terms (non-commercial); the "
                      "copy's repository is Apache-2.0; not redistributed"},
    "ffpp": {"data": "FaceForensics++ c23 face crops of its train split (image/train/) only; its "
                     "test split is for evaluation only",
             "copy": "github.com/tranthuhoai3786/FaceForensics (image/train/)",
             "terms": "the FaceForensics++ terms of use (research, non-commercial); not "
                      "redistributed"},
    "sbi": {"data": "self-blended pseudo-fakes made on the fly from the reals of the sources "
                    "(training/sbi.py, after Shiohara and Yamasaki, CVPR 2022)",
            "terms": "derived from the sources above"},
}

SUMMARY = (("DF validation AUC", "df-val"), ("DFDC test AUC", "dfdc-test"),
           ("FF++ test AUC (all methods)", "ffpp-all"), ("celebdf-hard clip AUC", "celebdf-hard"))


def benchmark_metrics(fig: dict) -> dict:
    """The card's metrics.benchmark (label -> n, roc_auc, accuracy) from one model's figures."""
    out = {"DF validation (aligned crops)": fig["df-val"],
           "DF validation videos (mean P(fake))": fig["df-val"]["video"],
           "DFDC test groups": fig["dfdc-test"]}
    for k in sorted(x for x in fig if x.startswith("ffpp-") and x != "ffpp-all"):
        out[f"FF++ {k[5:]} vs youtube"] = fig[k]
    out["FF++ all methods"] = fig["ffpp-all"]
    out["celebdf-hard clips (scan)"] = fig["celebdf-hard"]
    out["videos-dev clips (scan)"] = fig["videos-dev"]
    return {k: {"n": v["n"], "roc_auc": _r(v.get("roc_auc")), "accuracy": _r(v.get("accuracy"))}
            for k, v in out.items()}


def _r(v):
    return None if v is None else round(float(v), 4)


def finish(card: dict, name: str, bench: dict | None, bench_key: str | None,
           selection: dict | None, row: str | None, cost: dict | None, cost_key: str | None,
           prepare: dict | None, sources: list[str]) -> dict:
    card = dict(card, name=name)
    if bench is not None:
        fig = bench["models"][bench_key]["figures"]
        card.setdefault("metrics", {})["benchmark"] = benchmark_metrics(fig)
        card["cross_dataset_mean_auc"] = _r(fig["cross-dataset mean AUC"])
        card["summary"] = {label: _r(fig[k]["roc_auc"]) for label, k in SUMMARY}
        card["benchmark_sha256"] = bench["models"][bench_key]["sha256"]
    if selection is not None:
        r = selection["rows"][row]
        card["selection"] = {
            "rule": "docs/model.md, 'The rule of this round (issue 31)', written before any "
                    "run was scored: the 1/SE^2-weighted mean ROC AUC over the training "
                    "sources' selection carves, DF validation at least 0.92, a cheaper model "
                    "within 0.005 preferred; test sets choose nothing",
            "chosen": selection["chosen"], "this_row": row,
            "rows": {k: {c: ({"roc_auc": _r(v[c]["roc_auc"]), "se": _r(v[c]["se"])}
                             if c in v else None) for c in ("df-val", "dfdc-select", "ffpp-select")}
                     | {"score": _r(v["score"])} for k, v in selection["rows"].items()}}
    if cost is not None:
        m = cost["models"][cost_key]
        card["cost"] = {"faces_per_s": round(m["faces_per_s"]), "ms_per_face": m["ms_per_face"],
                        "runtime": cost["runtime"], "machine": cost["machine"],
                        "measured_by": "python bench/model_cost.py"}
    if not sources:  # the card's own record stands
        return card
    commits = (prepare or {}).get("commits", {})
    card["training_sources"] = [
        {"name": s, **SOURCES.get(s, {"data": s}),
         **({"commit": commits[s]} if s in commits else {})} for s in sources]
    return card


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.card", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", type=Path, required=True, help="the run's card (.json)")
    ap.add_argument("--name", required=True, help="the model's name")
    ap.add_argument("--benchmark", type=Path, help="training.benchmark's benchmark.json")
    ap.add_argument("--benchmark-key", help="the model's key there (default: its only model)")
    ap.add_argument("--selection", type=Path, help="training.selection's selection.json")
    ap.add_argument("--row", help="the model's row there")
    ap.add_argument("--cost", type=Path, help="bench/model_cost.py's model_cost.json")
    ap.add_argument("--cost-key", help="the model's key there")
    ap.add_argument("--prepare", type=Path, help="training.prepare's prepare.json (commits)")
    ap.add_argument("--sources", default="df,dfdc,ffpp,sbi",
                    help="what it trained on, comma-separated ('': keep the card's own record)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    def load(p):
        return json.loads(p.read_text()) if p else None
    bench = load(a.benchmark)
    key = a.benchmark_key or (next(iter(bench["models"])) if bench else None)
    card = finish(load(a.card), a.name, bench, key, load(a.selection), a.row, load(a.cost),
                  a.cost_key, load(a.prepare), [s for s in a.sources.split(",") if s])
    a.out.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({k: card.get(k) for k in ("name", "summary", "cost")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
