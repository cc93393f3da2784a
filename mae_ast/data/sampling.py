"""Class-balanced sampling for fine-tuning on unbalanced label sets (AudioSet), after SSAST.

A clip's weight is the sum over its labels of ``1000 / (count(label) + 0.01)``, so clips of
rare classes are drawn more often. Drawing is with replacement, a fresh draw each epoch,
deterministic in (seed, epoch) so that every distributed worker and a resumed run see the
same order; a fairseq task can return :func:`weighted_indices` from ``ordered_indices()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["label_counts", "sample_weights", "weighted_indices"]


def _unique_labels(row: Sequence[int], num_classes: int) -> np.ndarray:
    labels = np.unique(np.asarray(row, dtype=np.int64))
    if labels.size and (labels[0] < 0 or labels[-1] >= num_classes):
        raise ValueError(f"label out of range [0, {num_classes}): {list(row)}")
    return labels


def label_counts(label_rows: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """(num_classes,) number of clips carrying each label (a label repeated within a clip counts once)."""
    counts = np.zeros(num_classes, dtype=np.float64)
    for row in label_rows:
        counts[_unique_labels(row, num_classes)] += 1.0
    return counts


def sample_weights(label_rows: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """(N,) weight per clip: sum over its distinct labels of 1000 / (count(label) + 0.01).

    label_rows[i] lists clip i's class indices. Labels are de-duplicated per clip, as SSAST's
    multi-hot vectors do. A clip without labels gets weight 0 and is never drawn.
    """
    label_weight = 1000.0 / (label_counts(label_rows, num_classes) + 0.01)
    return np.array([label_weight[_unique_labels(row, num_classes)].sum() for row in label_rows], dtype=np.float64)


def weighted_indices(weights: np.ndarray, num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """(num_samples,) int64 indices into ``weights``, drawn with replacement with P(i) = w_i / sum(w).

    The same (seed, epoch) gives the same draw on every call and every process; another epoch
    gives another draw (the two are combined into one numpy SeedSequence, not added, so
    (seed, epoch) and (seed + 1, epoch - 1) do not collide).
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D array, got shape {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    if num_samples < 0 or seed < 0 or epoch < 0:
        raise ValueError(f"num_samples, seed and epoch must be >= 0, got {num_samples}, {seed}, {epoch}")
    rng = np.random.default_rng([seed, epoch])
    return rng.choice(weights.size, size=num_samples, replace=True, p=weights / weights.sum()).astype(np.int64)
