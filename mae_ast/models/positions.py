"""The sin/cos position table. Torch only: shipped into exported folders (``mae_ast/hf/remote_code.py``)."""

from __future__ import annotations

import math

import torch


def sinusoid_table(dim: int, length: int) -> torch.Tensor:
    """``(1, length, dim)`` sin/cos positions, base 10000."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div)
    pe[0, :, 1::2] = torch.cos(position * div)
    return pe
