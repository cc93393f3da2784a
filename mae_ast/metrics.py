"""Clip-level classification metrics. Plain numpy: the tests check them against
scikit-learn, which only means something if the two are independent implementations.

``scores``: (N, C), N clips, C classes (logits, probabilities or any monotone score);
``targets``: an (N, C) 0/1 matrix multi-label, (N,) class indices or (N, C) one-hot
single-label. A class that cannot be scored (AP: no positive clip; AUC: no positive or no
negative) is ``nan`` per class and left out of the means; scikit-learn's macro AP counts
it as 0 instead, so where a class never occurs our mAP is the higher one.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["binary_average_precision", "binary_roc_auc", "average_precision", "roc_auc", "mean_average_precision",
           "mean_auc", "d_prime", "accuracy", "classification_metrics"]


def _check_binary(scores: np.ndarray, targets: np.ndarray, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.ndim != ndim or scores.shape != targets.shape:
        raise ValueError(f"expected {ndim}-D scores and targets of one shape, got {scores.shape} and {targets.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain nan or inf")
    # Mixup-ed (soft) targets are a training-time thing; evaluation labels must be hard.
    if not np.all((targets == 0) | (targets == 1)):
        raise ValueError("targets must be 0/1")
    return scores, targets.astype(bool)


def _average_precision_1d(scores: np.ndarray, positive: np.ndarray) -> float:
    n_pos = int(positive.sum())
    if n_pos == 0:
        return math.nan
    # Descending scores; clips with equal scores form one threshold, so a tie block is
    # counted all at once (as scikit-learn's precision_recall_curve does).
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_pos = scores[order], positive[order]
    last_of_block = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    tp = np.cumsum(sorted_pos)[last_of_block]
    # AP = sum over thresholds of (recall gained at that threshold) * precision there.
    return float(np.sum(np.diff(tp / n_pos, prepend=0.0) * (tp / (last_of_block + 1))))


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks of ``scores`` in ascending order, tied values sharing their mean rank."""
    order = np.argsort(scores, kind="mergesort")
    starts = np.r_[0, np.flatnonzero(np.diff(scores[order])) + 1]
    ends = np.r_[starts[1:], len(scores)]
    ranks = np.empty(len(scores), dtype=np.float64)
    # A block at sorted positions [start, end) holds ranks start+1 .. end; each gets their mean.
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def _roc_auc_1d(scores: np.ndarray, positive: np.ndarray) -> float:
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # Mann-Whitney: P(score_pos > score_neg) + 0.5 P(equal), from average ranks; equals the
    # trapezoidal area under the ROC curve.
    rank_sum = _average_ranks(scores)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one class. scores, targets: (N,). nan when no target is positive."""
    return _average_precision_1d(*_check_binary(scores, targets, ndim=1))


def binary_roc_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """ROC AUC of one class, ties counted half. scores, targets: (N,). nan unless both 0 and 1 occur."""
    return _roc_auc_1d(*_check_binary(scores, targets, ndim=1))


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class average precision. scores, targets: (N, C) -> (C,); nan for a class with no positive."""
    s, t = _check_binary(scores, targets, ndim=2)
    return np.array([_average_precision_1d(s[:, c], t[:, c]) for c in range(s.shape[1])], dtype=np.float64)


def roc_auc(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class ROC AUC. scores, targets: (N, C) -> (C,); nan for a class lacking positives or negatives."""
    s, t = _check_binary(scores, targets, ndim=2)
    return np.array([_roc_auc_1d(s[:, c], t[:, c]) for c in range(s.shape[1])], dtype=np.float64)


def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """mAP: mean per-class AP over classes with a positive (see the module docstring). scores, targets: (N, C)."""
    return _nanmean(average_precision(scores, targets))


def mean_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean per-class ROC AUC over classes having both positives and negatives. scores, targets: (N, C)."""
    return _nanmean(roc_auc(scores, targets))


def d_prime(auc: float) -> float:
    """d' = sqrt(2) * Phi^-1(auc): auc 0.5 -> 0, 1 -> +inf, 0 -> -inf (as scipy's norm.ppf), nan -> nan."""
    auc = float(auc)
    if math.isnan(auc):
        return math.nan
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"auc must lie in [0, 1], got {auc}")
    if auc in (0.0, 1.0):
        return math.copysign(math.inf, auc - 0.5)
    return math.sqrt(2.0) * NormalDist().inv_cdf(auc)


def _as_class_indices(targets: np.ndarray, num_classes: int) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim == 2:
        if targets.shape[1] != num_classes:
            raise ValueError(f"one-hot targets have {targets.shape[1]} columns, scores {num_classes}")
        return targets.argmax(axis=1)
    if targets.ndim != 1:
        raise ValueError(f"targets must be (N,) indices or (N, C) one-hot, got shape {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError("target index out of range")
    return targets.astype(np.int64)


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1], a tie going to the lower class index; nan for N = 0."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    labels = _as_class_indices(targets, scores.shape[1])
    if len(labels) != len(scores):
        raise ValueError(f"{len(scores)} score rows but {len(labels)} targets")
    if len(labels) == 0:
        return math.nan
    return float(np.mean(scores.argmax(axis=1) == labels))


# What fine-tuning's validation logs per label mode (the criterion), so what
# checkpoint.best_checkpoint_metric may name (run_checks); the first is the headline.
SPLIT_METRICS = {False: ("accuracy",), True: ("mAP", "auc", "d_prime")}


def headline_metric(multi_label: bool) -> str:
    return SPLIT_METRICS[multi_label][0]


def classification_metrics(scores: np.ndarray, targets: np.ndarray, multi_label: bool) -> dict:
    """A whole split's metrics: ``accuracy`` single-label; multi-label ``mAP``, ``auc`` and
    ``d_prime`` of the mean AUC (as SSAST/AST report it), with counts of the classes left out
    (``classes_without_positive``/``_negative``), so a mean over a few classes is not taken
    for one over all of them. Both give ``n_clips``."""
    scores = np.asarray(scores)
    n_clips = int(scores.shape[0])
    if not multi_label:
        return {"accuracy": accuracy(scores, targets), "n_clips": n_clips}
    positives = np.asarray(targets).sum(axis=0)
    auc = mean_auc(scores, targets)
    return {
        "mAP": mean_average_precision(scores, targets),
        "auc": auc,
        "d_prime": d_prime(auc),
        "n_clips": n_clips,
        "n_classes": int(scores.shape[1]),
        "classes_without_positive": int(np.sum(positives == 0)),
        "classes_without_negative": int(np.sum(positives == n_clips)) if n_clips else 0,
    }
