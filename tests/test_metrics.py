"""mae_ast.metrics against scikit-learn (an independent implementation) and hand computations."""

import json
import math
import warnings
from statistics import NormalDist

import numpy as np
import pytest

from mae_ast.metrics import (
    accuracy,
    average_precision,
    binary_average_precision,
    binary_roc_auc,
    classification_metrics,
    d_prime,
    mean_auc,
    mean_average_precision,
    roc_auc,
)

sk = pytest.importorskip("sklearn.metrics")


def _random_multilabel(seed: int, n: int = 300, c: int = 9, decimals: int | None = 1):
    """Scores rounded to force ties; every class has at least one positive and one negative."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < rng.uniform(0.03, 0.5, size=c)).astype(np.int64)
    targets[0], targets[1] = 1, 0
    # Scores correlated with targets so AP/AUC are far from their chance values.
    scores = rng.random((n, c)) + 0.4 * targets
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, targets


@pytest.mark.parametrize("decimals", [1, 2, None])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn(seed, decimals):
    scores, targets = _random_multilabel(seed, decimals=decimals)
    ours = average_precision(scores, targets)
    theirs = sk.average_precision_score(targets, scores, average=None)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    assert abs(mean_average_precision(scores, targets) - sk.average_precision_score(targets, scores)) < 1e-9


@pytest.mark.parametrize("decimals", [1, 2, None])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn(seed, decimals):
    scores, targets = _random_multilabel(seed, decimals=decimals)
    ours = roc_auc(scores, targets)
    theirs = sk.roc_auc_score(targets, scores, average=None)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    assert abs(mean_auc(scores, targets) - sk.roc_auc_score(targets, scores, average="macro")) < 1e-9


def test_average_precision_hand_computed_with_tie():
    # Threshold 0.8 takes both tied clips at once: precision 1/2 at recall 1/2; then 0.1 gives
    # precision 2/3 at recall 1. Counting the tied positive first would give 0.5 + 1/3 instead.
    assert binary_average_precision(np.array([0.8, 0.8, 0.1]), np.array([1, 0, 1])) == pytest.approx(0.25 + 1 / 3)
    # No ties: positives at ranks 1 and 3 -> (1 + 2/3) / 2.
    assert binary_average_precision(np.array([0.9, 0.5, 0.4, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    assert binary_average_precision(np.array([0.9, 0.5]), np.array([1, 1])) == 1.0


def test_roc_auc_hand_computed_with_tie():
    # positives {0.8, 0.1}, negatives {0.8, 0.3}: pairs score 0.5 (tie) + 1 + 0 + 0 = 1.5 of 4.
    assert binary_roc_auc(np.array([0.8, 0.8, 0.1, 0.3]), np.array([1, 0, 1, 0])) == pytest.approx(0.375)
    assert binary_roc_auc(np.array([0.9, 0.1]), np.array([1, 0])) == 1.0
    assert binary_roc_auc(np.array([0.1, 0.9]), np.array([1, 0])) == 0.0
    assert binary_roc_auc(np.array([0.5, 0.5, 0.5]), np.array([1, 0, 1])) == 0.5


def test_class_without_positive_is_skipped_unlike_sklearn_macro():
    scores, targets = _random_multilabel(3, c=4)
    targets[:, 2] = 0
    ap = average_precision(scores, targets)
    assert math.isnan(ap[2]) and not np.isnan(ap[[0, 1, 3]]).any()
    expected = np.mean([sk.average_precision_score(targets[:, c], scores[:, c]) for c in (0, 1, 3)])
    assert mean_average_precision(scores, targets) == pytest.approx(expected, abs=1e-12)
    # The documented difference: scikit-learn scores the empty class 0 and averages it in.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_macro = sk.average_precision_score(targets, scores, average="macro")
    assert sk_macro == pytest.approx(expected * 3 / 4, abs=1e-12)


def test_auc_skips_classes_lacking_positives_or_negatives():
    scores, targets = _random_multilabel(4, c=4)
    targets[:, 1] = 0
    targets[:, 3] = 1
    auc = roc_auc(scores, targets)
    assert np.isnan(auc[[1, 3]]).all() and not np.isnan(auc[[0, 2]]).any()
    expected = np.mean([sk.roc_auc_score(targets[:, c], scores[:, c]) for c in (0, 2)])
    assert mean_auc(scores, targets) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(mean_auc(scores[:, [1]], targets[:, [1]]))


def test_d_prime():
    assert d_prime(0.5) == 0.0
    # AUC = Phi(d' / sqrt(2)): unit-variance Gaussians sqrt(2) apart have AUC Phi(1).
    assert d_prime(NormalDist().cdf(1.0)) == pytest.approx(math.sqrt(2.0), abs=1e-12)
    assert d_prime(0.2) == pytest.approx(-d_prime(0.8), abs=1e-12)
    assert d_prime(1.0) == math.inf and d_prime(0.0) == -math.inf
    assert math.isnan(d_prime(math.nan))
    with pytest.raises(ValueError):
        d_prime(1.5)


def test_d_prime_matches_scipy():
    norm = pytest.importorskip("scipy.stats").norm
    for auc in (0.01, 0.3, 0.7, 0.9, 0.97, 0.999):
        assert d_prime(auc) == pytest.approx(math.sqrt(2.0) * norm.ppf(auc), abs=1e-9)


def test_accuracy_known_case():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]])
    # Predictions 1, 0, 2, and 0 for the tied last row (first arg-max).
    assert accuracy(scores, np.array([1, 0, 1, 0])) == 0.75
    assert accuracy(scores, np.array([1, 0, 1, 1])) == 0.5
    one_hot = np.eye(3)[[1, 0, 1, 0]]
    assert accuracy(scores, one_hot) == 0.75
    with pytest.raises(ValueError):
        accuracy(scores, np.array([1, 0, 3, 0]))


def test_classification_metrics():
    scores, targets = _random_multilabel(5)
    m = classification_metrics(scores, targets, multi_label=True)
    assert set(m) == {"mAP", "auc", "d_prime", "n_clips", "n_classes", "classes_without_positive",
                      "classes_without_negative"}
    assert (m["n_classes"], m["classes_without_positive"], m["classes_without_negative"]) == (9, 0, 0)
    assert m["n_clips"] == len(scores)
    assert m["mAP"] == pytest.approx(sk.average_precision_score(targets, scores), abs=1e-9)
    assert m["auc"] == pytest.approx(sk.roc_auc_score(targets, scores), abs=1e-9)
    assert m["d_prime"] == pytest.approx(d_prime(m["auc"])) and m["d_prime"] > 0

    labels = np.array([2, 0, 1])
    single = classification_metrics(np.eye(3)[[2, 0, 0]], labels, multi_label=False)
    assert single == {"accuracy": pytest.approx(2 / 3), "n_clips": 3}


def test_classes_left_out_are_counted_and_the_json_is_strict():
    """Item 20: a class with no positive (or no negative) clip is left out of the means, as
    scikit-learn's per-class scores over the scorable classes, and counted; what cannot be
    computed is null in the tools' JSON, never NaN or Infinity."""
    from mae_ast.tools._common import json_safe

    scores, targets = _random_multilabel(6, c=5)
    targets[:, 1] = 0  # no positive: out of mAP and AUC
    targets[:, 4] = 1  # no negative: out of AUC only
    m = classification_metrics(scores, targets, multi_label=True)
    assert (m["n_classes"], m["classes_without_positive"], m["classes_without_negative"]) == (5, 1, 1)
    ap_kept, auc_kept = [0, 2, 3, 4], [0, 2, 3]
    assert m["mAP"] == pytest.approx(sk.average_precision_score(targets[:, ap_kept], scores[:, ap_kept]), abs=1e-9)
    assert m["auc"] == pytest.approx(sk.roc_auc_score(targets[:, auc_kept], scores[:, auc_kept]), abs=1e-9)

    # Every clip positive for the one class: AP 1, AUC undefined, d' undefined.
    single = classification_metrics(scores[:, [4]], targets[:, [4]], multi_label=True)
    assert single["mAP"] == 1.0 and math.isnan(single["auc"]) and math.isnan(single["d_prime"])
    assert single["classes_without_negative"] == 1
    perfect = classification_metrics(np.array([[0.9], [0.1]]), np.array([[1], [0]]), multi_label=True)
    assert perfect["d_prime"] == math.inf
    for result in (single, perfect):
        text = json.dumps(json_safe(result), allow_nan=False)
        assert "NaN" not in text and "Infinity" not in text


def test_rejects_bad_inputs():
    with pytest.raises(ValueError):
        average_precision(np.zeros((3, 2)), np.array([[0, 1], [1, 0], [0.5, 1]]))  # soft targets
    with pytest.raises(ValueError):
        roc_auc(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        binary_roc_auc(np.array([0.1, np.nan]), np.array([0, 1]))


def test_the_classification_loss_is_torchs_and_auto_follows_the_label_mode():
    """One loss for the criterion and the exported classifier (``class_scores``), against torch's."""
    import torch
    import torch.nn.functional as F

    from mae_ast.models.class_scores import per_clip_loss, resolve_loss

    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(5, 4, generator=g) * 3, torch.tensor([0, 3, 1, 2, 3])
    one_hot, soft = F.one_hot(labels, 4).float(), torch.softmax(torch.randn(5, 4, generator=g), dim=-1)
    torch.testing.assert_close(per_clip_loss(logits, one_hot, "ce").mean(), F.cross_entropy(logits, labels))
    torch.testing.assert_close(per_clip_loss(logits, soft, "ce").mean(), F.cross_entropy(logits, soft))
    torch.testing.assert_close(per_clip_loss(logits, one_hot, "bce"),
                               F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none").mean(dim=1))
    assert per_clip_loss(logits.half(), one_hot, "bce").dtype == torch.float32
    assert [resolve_loss(loss, multi) for loss, multi in ((None, False), ("auto", True), ("bce", False), ("ce", True))] \
        == ["ce", "bce", "bce", "ce"]
    with pytest.raises(ValueError, match="loss 'focal': not one of auto, ce, bce"):
        resolve_loss("focal", False)
