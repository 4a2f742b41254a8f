"""training.card: a card finished from the files that measured the model, figures copied."""
import json

from screener.shipped import shipped_models
from training import card as cardmod


def _figures(auc):
    one = {"n": 10, "roc_auc": auc, "accuracy": 0.5}
    return {"df-val": {**one, "video": {"n": 3, "roc_auc": 0.9, "accuracy": 0.6}},
            "dfdc-test": dict(one, roc_auc=auc - 0.1), "ffpp-Deepfakes": one,
            "ffpp-FaceSwap": one, "ffpp-all": dict(one, roc_auc=auc - 0.2),
            "celebdf-hard": {"n": 14, "right": 9, "roc_auc": 0.55, "accuracy": None},
            "videos-dev": {"n": 4, "right": 3, "roc_auc": None},
            "cross-dataset mean AUC": 0.6}


def test_a_card_is_finished_from_benchmark_selection_cost_and_prepare(tmp_path):
    bench = {"models": {"m.keras": {"name": "x", "sha256": "ab" * 32, "figures": _figures(0.93)}}}
    sel = {"chosen": "run-b", "rows": {
        "run-a": {"df-val": {"roc_auc": 0.9, "se": 0.01}, "score": 0.6},
        "run-b": {"df-val": {"roc_auc": 0.95, "se": 0.01},
                  "dfdc-select": {"roc_auc": 0.6, "se": 0.007}, "score": 0.7}}}
    cost = {"runtime": "LiteRT, 1 thread", "machine": "m", "models": {
        "m.keras": {"faces_per_s": 290.0, "ms_per_face": 3.45, "speed_vs_first": 1.0}}}
    run_card = {"name": "run-b", "arch": "meso4", "threshold": 0.5, "metrics": {"train": 1}}
    paths = {}
    for k, v in dict(bench=bench, sel=sel, cost=cost, card=run_card,
                     prep={"commits": {"dfdc": "c0ffee"}}).items():
        paths[k] = tmp_path / f"{k}.json"
        paths[k].write_text(json.dumps(v))
    out = tmp_path / "shipped"
    out.mkdir()
    assert cardmod.main(["--card", str(paths["card"]), "--name", "screener-new",
                         "--benchmark", str(paths["bench"]), "--selection", str(paths["sel"]),
                         "--row", "run-b", "--cost", str(paths["cost"]), "--cost-key", "m.keras",
                         "--prepare", str(paths["prep"]), "--out", str(out / "new.json")]) == 0
    c = json.loads((out / "new.json").read_text())
    assert c["name"] == "screener-new" and c["threshold"] == 0.5 and c["metrics"]["train"] == 1
    assert c["summary"] == {"DF validation AUC": 0.93, "DFDC test AUC": 0.83,
                            "FF++ test AUC (all methods)": 0.73, "celebdf-hard clip AUC": 0.55}
    b = c["metrics"]["benchmark"]
    assert b["FF++ FaceSwap vs youtube"]["roc_auc"] == 0.93 and b["videos-dev clips (scan)"]["roc_auc"] is None
    assert c["selection"]["chosen"] == "run-b" and c["selection"]["rows"]["run-a"]["dfdc-select"] is None
    assert c["cost"]["faces_per_s"] == 290.0
    by = {s["name"]: s for s in c["training_sources"]}
    assert by["dfdc"]["commit"] == "c0ffee" and "commit" not in by["df"] and "terms" in by["ffpp"]
    # What `screener models` lists from it, beside a copy of the default model's file.
    (out / "new.keras").write_bytes(shipped_models()[0].path.read_bytes())
    listed = {m.name: m for m in shipped_models(out)}
    assert listed["new"].summary["DFDC test AUC"] == 0.83 and listed["new"].cost["ms_per_face"] == 3.45
