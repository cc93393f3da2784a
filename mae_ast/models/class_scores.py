"""Class probabilities and the classification loss of logits: one definition for the criterion,
validation, every scoring tool and the exported classifier (shipped in its folder)."""

import torch
import torch.nn.functional as F

LOSSES = ("ce", "bce")


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """``(..., C)`` logits -> float32 sigmoid (multi-label) or softmax (single-label)."""
    logits = logits.float()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


def resolve_loss(loss: str | None, multi_label: bool) -> str:
    """``criterion.loss``: ``auto`` (or unrecorded) is BCE for multi-label, cross-entropy otherwise."""
    loss = "auto" if loss is None else str(loss)
    if loss not in ("auto", *LOSSES):
        raise ValueError(f"loss {loss!r}: not one of auto, {', '.join(LOSSES)}")
    return loss if loss != "auto" else ("bce" if multi_label else "ce")


def per_clip_loss(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """``(B,)`` float32 losses of ``(B, C)`` logits against ``(B, C)`` targets (soft or 0/1):
    ``ce`` is -sum t log softmax (cross-entropy for one-hot rows); ``bce`` is the mean over
    classes, as torch's BCEWithLogitsLoss (SSAST) averages."""
    logits, target = logits.float(), target.float()
    if loss == "ce":
        return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=-1)
