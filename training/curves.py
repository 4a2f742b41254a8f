"""The training curves of a run folder's log.csv, drawn to curves.png."""
from __future__ import annotations

import csv
from pathlib import Path


def plot_curves(log_csv: Path, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(csv.DictReader(open(log_csv)))
    if not rows:
        return
    ep = [int(r["epoch"]) for r in rows]
    fig, (l, r) = plt.subplots(1, 2, figsize=(9, 3.5))
    l.plot(ep, [float(x["loss"]) for x in rows], label="train")
    l.plot(ep, [float(x["holdout_loss"]) for x in rows], label="holdout")
    l.set(xlabel="epoch", ylabel="binary cross-entropy", title="loss")
    r.plot(ep, [float(x["acc"]) for x in rows], label="train acc")
    r.plot(ep, [float(x["holdout_acc"]) for x in rows], label="holdout acc")
    r.plot(ep, [float(x["holdout_auc"]) for x in rows], label="holdout AUC")
    r.set(xlabel="epoch", title="accuracy / AUC")
    for ax in (l, r):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
