"""Class probabilities of logits, one definition for validation and every scoring tool."""

import torch


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """``(..., C)`` logits -> float32 sigmoid (multi-label) or softmax (single-label)."""
    logits = logits.float()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
