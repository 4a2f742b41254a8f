r"""Evaluate a model file on a folder of labelled face crops.

    python -m training.evaluate --model trained_models/screener-meso.keras \
        --data data/mesonet-df-aligned/validation --out runs/eval/ours-aligned

`--data` is a folder with one subfolder per class (`df` = fake = 1 and `real` = 0 by default).
Any model `screener.scoring.load_model` reads works: our `.keras` files, the published `.h5`
weights and legacy `.hdf5` models (all scored as P(fake)). Prints the figures and writes
`metrics.json`, `metrics.md`, `roc.png` and `scores.csv` to `--out`.
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
from screener.scoring import load_model

from . import metrics
from .data import RESIZE_MODES, BatchStream, list_split

log = logging.getLogger(__name__)


def score_folder(scorer, data: Path, fake: str = "df", real: str = "real",
                 resize_mode: str = "nearest", batch_size: int = 64):
    """Score every image of `data/{fake,real}`. Returns (kept samples, scores, skipped dict)."""
    samples = list_split(data.parent, data.name, fake, real)
    stream = BatchStream(samples, batch_size=batch_size, resize_mode=resize_mode)
    scores = [scorer.predict(x) for x, _, _ in stream]
    scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    return stream.kept, scores, stream.stats.skipped


def evaluate(scorer, data: Path, fake="df", real="real", resize_mode="nearest",
             batch_size=64, threshold: float | None = None) -> tuple[dict, list, np.ndarray]:
    t0 = time.time()
    kept, scores, skipped = score_folder(scorer, data, fake, real, resize_mode, batch_size)
    threshold = scorer.card.threshold if threshold is None else threshold
    y = np.array([s.label for s in kept], int)
    result = {
        "model": scorer.card.name, "model_path": scorer.card.path, "model_sha256": scorer.card.sha256,
        "data": str(data), "resize": resize_mode, "labels": {"fake (1)": fake, "real (0)": real},
        "skipped": len(skipped), "skipped_files": skipped,
        "image": metrics.binary_report(y, scores, threshold),
        "seconds": round(time.time() - t0, 1),
    }
    if any(s.video is not None for s in kept):
        ids, vy, vs = metrics.video_scores([s.group if s.video else None for s in kept], y, scores)
        result["video"] = metrics.binary_report(vy, vs, threshold)
        result["video"]["aggregation"] = "mean P(fake) over the video's frames"
        result["video"]["frames_without_video_id"] = sum(s.video is None for s in kept)
    return result, kept, scores


def _fmt(v):
    return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def to_markdown(r: dict) -> str:
    im = r["image"]
    lines = [f"# {r['model']} on {r['data']}", "",
             f"Resize: {r['resize']}; threshold {im['threshold']:g}; {im['n']} images"
             f" ({r['skipped']} unreadable, skipped).", "",
             "| level | n | accuracy | ROC AUC | EER | balanced acc. |",
             "| --- | --- | --- | --- | --- | --- |"]
    for level in ("image", "video"):
        if level in r:
            m = r[level]
            lines.append(f"| {level} | {m['n']} | {_fmt(m['accuracy'])} | {_fmt(m['roc_auc'])} | "
                         f"{_fmt(m['eer'])} | {_fmt(m['balanced_accuracy'])} |")
    lines += ["", "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    for name, c in im["per_class"].items():
        lines.append(f"| {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | "
                     f"{c['support']} |")
    (fake_fake, fake_real), (real_fake, real_real) = im["confusion_matrix"]["matrix"]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted):", "",
              "| | predicted fake | predicted real |", "| --- | --- | --- |",
              f"| true fake | {fake_fake} | {fake_real} |",
              f"| true real | {real_fake} | {real_real} |", ""]
    return "\n".join(lines)


def plot_roc(y, scores, path: Path, title: str, video=None) -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    curves = [("image", y, scores)] + ([("video", *video)] if video is not None else [])
    for name, yy, ss in curves:
        if len(set(np.asarray(yy).tolist())) == 2:
            fpr, tpr, _ = roc_curve(yy, ss)
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fake caught)",
           title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(result: dict, kept, scores, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "metrics.md").write_text(to_markdown(result))
    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "video", "p_fake"])
        for s, p in zip(kept, scores):
            w.writerow([str(s.path), s.label, s.video or "", f"{p:.6f}"])
    y = [s.label for s in kept]
    video = None
    if "video" in result:
        _, vy, vs = metrics.video_scores([s.group if s.video else None for s in kept], y, scores)
        video = (vy, vs)
    plot_roc(y, scores, out / "roc.png", result["model"], video)


def summary(result: dict) -> dict:
    """The figures a model card keeps: the headline numbers, not the per-file lists."""
    keep = ("n", "threshold", "accuracy", "balanced_accuracy", "roc_auc", "eer", "per_class",
            "confusion_matrix")
    out = {"data": result["data"], "resize": result["resize"], "skipped": result["skipped"],
           "image": {k: result["image"][k] for k in keep}}
    if "video" in result:
        out["video"] = {k: result["video"][k] for k in keep}
    return out


def record_in_card(model: Path, key: str, result: dict) -> None:
    card_path = model.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {"name": model.stem}
    card.setdefault("metrics", {})[key] = summary(result)
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model file (.keras, or legacy .h5/.hdf5)")
    p.add_argument("--data", required=True, type=Path,
                   help="folder holding the class folders, e.g. .../validation")
    p.add_argument("--fake-dir", default="df", help="name of the fake class folder (label 1)")
    p.add_argument("--real-dir", default="real", help="name of the real class folder (label 0)")
    p.add_argument("--resize", choices=RESIZE_MODES, default="nearest",
                   help="how images that are not 256x256 are resized (nearest: as the published "
                        "weights were trained; area: the scan's resize)")
    p.add_argument("--threshold", type=float, default=None,
                   help="decision threshold on P(fake) (default: the model card's)")
    p.add_argument("--batch-size", type=int, default=64, help="images per prediction batch")
    p.add_argument("--card-key", default=None,
                   help="also record the figures in the model card (<model>.json) under "
                        "metrics[KEY], e.g. aligned_validation")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default runs/eval/<model>-<data folder>)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        scorer = load_model(args.model)
        result, kept, scores = evaluate(scorer, args.data, args.fake_dir, args.real_dir,
                                        args.resize, args.batch_size, args.threshold)
    except (ScreenerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or Path("runs/eval") / f"{Path(args.model).stem}-{args.data.parent.name}-{args.data.name}"
    write_outputs(result, kept, scores, out)
    if args.card_key:
        record_in_card(Path(args.model), args.card_key, result)
    print(to_markdown(result))
    print(f"wrote {out}/metrics.json, metrics.md, roc.png, scores.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
