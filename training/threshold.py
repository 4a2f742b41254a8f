"""The decision threshold a training run writes into its model card, chosen on the holdout.

`best`: the grid threshold with the best balanced accuracy. `cautious` (the default): that one
only if its gain over 0.5 beats twice its bootstrap standard error, resampling whole groups
(videos, or groups of alike images), since frames of a group err together; else 0.5.
"""
from __future__ import annotations

import numpy as np

from . import metrics

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


THRESHOLD_RULES = ("cautious", "best")


def choose_threshold(y, p, groups=None, rule: str = "best", draws: int = 1000,
                     seed: int = 1234) -> dict:
    """The holdout threshold for labels y and scores p.

    `best`: the grid threshold with the best balanced accuracy. `cautious`: that threshold
    only if its gain over 0.5 is more than twice its standard error, else 0.5. A model trained
    with balanced class weights puts its equal-error decision near 0.5; a few hundred held-out
    frames of a few dozen videos rarely show a real gain elsewhere, and a step picked on noise
    moves every video's verdict. The standard error comes from resampling whole `groups`
    (videos or groups of alike images) within each class, since frames of a group err together.
    """
    y, p = np.asarray(y, int), np.asarray(p, float)
    scores = {float(t): metrics.binary_report(y, p, t)["balanced_accuracy"] for t in THRESHOLD_GRID}
    t = max(scores, key=lambda k: (scores[k], -abs(k - 0.5)))  # ties: the one nearer 0.5
    out = {"value": t, "holdout_balanced_accuracy": scores[t],
           "holdout_balanced_accuracy_at_0.5": scores[0.5],
           "chosen_by": "max balanced accuracy on the train holdout, grid 0.05..0.95 step 0.05"}
    if rule == "cautious":
        gain = scores[t] - scores[0.5]
        se = gain_stderr(y, p, t, groups if groups is not None else np.arange(len(y)), draws, seed)
        out.update(best_grid_threshold=t, gain_over_0_5=gain, gain_stderr=se,
                   chosen_by="cautious: the best grid threshold (balanced accuracy, step 0.05) "
                             "only if it beats 0.5 by more than 2 standard errors (bootstrap "
                             f"over {len(set(map(str, groups))) if groups is not None else len(y)} "
                             "holdout groups), else 0.5")
        if not gain > 2 * se:
            out["value"] = t = 0.5
            out["holdout_balanced_accuracy"] = scores[0.5]
        print(f"best grid threshold {out['best_grid_threshold']:g}: balanced accuracy "
              f"{scores[out['best_grid_threshold']]:.4f} vs {scores[0.5]:.4f} at 0.5 (gain "
              f"{gain:+.4f}, standard error {se:.4f})", flush=True)
    elif rule != "best":
        raise ValueError(f"threshold rule must be one of {', '.join(THRESHOLD_RULES)}")
    print(f"threshold {t:g} (holdout balanced accuracy {scores[t]:.4f}; at 0.5: {scores[0.5]:.4f})",
          flush=True)
    return out


def gain_stderr(y, p, t, groups, draws: int, seed: int) -> float:
    """Bootstrap standard error of balanced accuracy at t minus at 0.5, resampling groups
    with replacement within each class."""
    if t == 0.5:
        return 0.0
    rng = np.random.default_rng(seed)
    keys = np.unique([str(g) for g in groups], return_inverse=True)[1]
    # Per group: its class, and how many of its frames each threshold gets right.
    n_g = keys.max() + 1
    cls = np.zeros(n_g, int)
    cls[keys] = y
    size = np.bincount(keys, minlength=n_g)
    right = [np.bincount(keys, weights=((p >= th) == (y == 1)), minlength=n_g) for th in (t, 0.5)]
    diffs = []
    for _ in range(draws):
        count = np.zeros(n_g)
        for c in (0, 1):
            ids = np.flatnonzero(cls == c)
            np.add.at(count, rng.choice(ids, len(ids)), 1)
        recall = [[(count * r)[cls == c].sum() / (count * size)[cls == c].sum() for c in (0, 1)]
                  for r in right]
        diffs.append(np.mean(recall[0]) - np.mean(recall[1]))
    return float(np.std(diffs))
