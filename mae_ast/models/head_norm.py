"""The classifier's head before its Linear: mean pooling and ``fc_norm`` (``model.head_norm``;
why two kinds: ``mae_ast_classifier``'s docstring). Torch only: shipped into exported folders
(``mae_ast/hf/remote_code.py``)."""

from __future__ import annotations

import torch
import torch.nn as nn


def mean_over_valid(x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """``(B, tokens, dim)`` -> ``(B, dim)``: each clip's mean over its valid tokens (True = padding)."""
    valid = (~padding_mask).unsqueeze(-1).to(x.dtype)
    return (x * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)


class FeatureNorm(nn.BatchNorm1d):
    """Each pooled feature standardised over the batch in training, over the running
    statistics at evaluation; no affine parameters (the linear layer after it has them).
    A one-clip training batch has no spread to standardise by, so it uses the running
    statistics instead of failing as BatchNorm1d does."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, affine=False, eps=1e-6)  # MAE's probe: BatchNorm1d(affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, training=False, eps=self.eps)
        return super().forward(x)


def build_head_norm(kind: str, dim: int) -> nn.Module:
    if kind == "batchnorm":
        return FeatureNorm(dim)
    if kind == "layernorm":
        return nn.LayerNorm(dim)
    raise ValueError(f"model.head_norm={kind!r}: expected layernorm or batchnorm")
