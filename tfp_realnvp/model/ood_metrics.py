"""Detection metrics of out-of-distribution scores (NumPy): AUROC, AUPR, FPR at 95% TPR.

The out-of-distribution images are the positives and a higher score means "more
anomalous", as ``RealNVP.ood_scores`` returns them.
"""

from __future__ import annotations

import numpy as np


def _checked(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray]:
    inside = np.asarray(in_scores, dtype=np.float64).reshape(-1)
    outside = np.asarray(out_scores, dtype=np.float64).reshape(-1)
    for name, scores in (("in_scores", inside), ("out_scores", outside)):
        if scores.size == 0 or not np.all(np.isfinite(scores)):
            raise ValueError(f"{name} must be a non-empty set of finite scores; received {scores.size} values.")
    return inside, outside


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve: the probability that an out-of-distribution image
    scores higher than an in-distribution one, ties counted half (Mann-Whitney U)."""
    inside, outside = _checked(in_scores, out_scores)
    scores = np.concatenate([inside, outside])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = 0.5 * (start + 1 + end)
    rank_sum = ranks[len(inside) :].sum()
    return float((rank_sum - len(outside) * (len(outside) + 1) / 2) / (len(inside) * len(outside)))


def aupr(in_scores, out_scores) -> float:
    """Area under the precision-recall curve with the out-of-distribution images as
    positives (average precision: the precision at each positive, thresholds at
    every distinct score)."""
    inside, outside = _checked(in_scores, out_scores)
    scores = np.concatenate([inside, outside])
    positive = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    true_positives = np.cumsum(positive)
    # Evaluate at the last position of each run of tied scores.
    last = np.r_[scores[1:] != scores[:-1], True]
    tp = true_positives[last]
    predicted = np.flatnonzero(last) + 1
    precision = tp / predicted
    recall_gain = np.diff(np.r_[0.0, tp]) / len(outside)
    return float(np.sum(precision * recall_gain))


def fpr_at_tpr(in_scores, out_scores, tpr: float = 0.95) -> float:
    """The fraction of in-distribution images flagged at the lowest threshold that
    flags at least ``tpr`` of the out-of-distribution images."""
    inside, outside = _checked(in_scores, out_scores)
    threshold = np.sort(outside)[::-1][int(np.ceil(tpr * len(outside))) - 1]
    return float(np.mean(inside >= threshold))


def detection_metrics(in_scores, out_scores) -> dict:
    """``{"auroc", "aupr", "fpr_at_95_tpr"}`` of the scores of the two sets."""
    return {
        "auroc": auroc(in_scores, out_scores),
        "aupr": aupr(in_scores, out_scores),
        "fpr_at_95_tpr": fpr_at_tpr(in_scores, out_scores, 0.95),
    }
