"""Class probabilities of a classifier's logits: what validation (the criterion) and every
scoring tool report, so the two can never disagree."""

import torch


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Class probabilities of ``(..., C)`` logits: sigmoid (multi-label) or softmax over
    classes (single-label), in float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
