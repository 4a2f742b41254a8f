"""Binary-classification metrics on P(fake) scores (1 is fake), image- and video-level.

scikit-learn computes them; this module only fixes the conventions (positive class = fake,
threshold applied as `score >= threshold`, EER from the ROC curve) and handles the cases where
a metric is undefined (one class only) by returning None instead of raising.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from sklearn import metrics as skm


def eer(y_true, scores) -> float | None:
    """Equal error rate: where the false-positive rate equals the false-negative rate,
    interpolated linearly between the two ROC points that straddle it."""
    y_true = np.asarray(y_true)
    if len(set(y_true.tolist())) < 2:
        return None
    fpr, tpr, _ = skm.roc_curve(y_true, scores, pos_label=1)
    fnr = 1 - tpr
    i = int(np.argmax(fnr <= fpr))  # first point where the curves have crossed
    if i == 0:
        return float(fpr[0])
    d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]   # d0 < 0 <= d1
    t = d0 / (d0 - d1) if d1 != d0 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def binary_report(y_true, scores, threshold: float = 0.5) -> dict:
    """Accuracy at the threshold, per-class P/R/F1, ROC AUC, EER and the confusion matrix."""
    y_true = np.asarray(y_true, int)
    scores = np.asarray(scores, float)
    y_pred = (scores >= threshold).astype(int)
    both = len(set(y_true.tolist())) == 2
    p, r, f, n = skm.precision_recall_fscore_support(y_true, y_pred, labels=[1, 0],
                                                     zero_division=0)
    cm = skm.confusion_matrix(y_true, y_pred, labels=[1, 0])
    return {
        "n": int(len(y_true)),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)) if len(y_true) else None,
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)) if both else None,
        "roc_auc": float(skm.roc_auc_score(y_true, scores)) if both else None,
        "eer": eer(y_true, scores),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                   "support": int(n[i])}
            for i, name in enumerate(("fake", "real"))
        },
        # rows: true fake, true real; columns: predicted fake, predicted real
        "confusion_matrix": {"labels": ["fake", "real"], "matrix": cm.tolist()},
    }


def video_scores(videos, y_true, scores):
    """Mean score per video. Returns (video ids, labels, mean scores), sorted by id.
    A video's label must be the same on all its frames (checked)."""
    acc = defaultdict(list)
    label = {}
    for v, y, s in zip(videos, y_true, scores):
        if v is None:
            continue
        if label.setdefault(v, int(y)) != int(y):
            raise ValueError(f"video {v!r} has frames of both classes")
        acc[v].append(float(s))
    ids = sorted(acc)
    return ids, np.array([label[v] for v in ids], int), np.array([np.mean(acc[v]) for v in ids])
