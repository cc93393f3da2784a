"""Position encodings: the sin/cos table and wav2vec 2.0's convolutional positions. Torch
only: shipped into exported folders (``mae_ast/hf/remote_code.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoid_table(dim: int, length: int) -> torch.Tensor:
    """``(1, length, dim)`` sin/cos positions, base 10000."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div)
    pe[0, :, 1::2] = torch.cos(position * div)
    return pe


class SinusoidalPositionalEncoding(nn.Module):
    """``sinusoid_table`` as a buffer, in ``state_dict`` if ``persistent``."""

    def __init__(self, dim: int, max_len: int, persistent: bool = True) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoid_table(dim, max_len), persistent=persistent)

    def forward(self, length: int, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(1, length, dim)`` or, with a padding mask, ``(B, length, dim)`` zeroed at pads."""
        if length > self.pe.shape[1]:
            raise ValueError(f"{length} tokens exceed max_token_length={self.pe.shape[1]}: crop the input "
                             "(or train with a larger max_token_length)")
        pe = self.pe[:, :length]
        return pe if padding_mask is None else pe.masked_fill(padding_mask.unsqueeze(-1), 0.0)


class ConvPosEmbed(nn.Module):
    """wav2vec 2.0 convolutional positions (weight-normed grouped conv, SamePad, GELU);
    ``cfg`` gives ``conv_pos`` and ``conv_pos_groups``. ``weight_norm``: torch's old one, whose
    ``weight_g``/``weight_v`` keys the original's checkpoints hold, or its parametrization
    (an exported folder's; key mapping: ``hf/folder.py``'s ``WEIGHT_NORM``)."""

    def __init__(self, cfg: Any, dim: int, weight_norm: Callable[..., nn.Module] = nn.utils.weight_norm) -> None:
        super().__init__()
        conv = nn.Conv1d(dim, dim, cfg.conv_pos, padding=cfg.conv_pos // 2, groups=cfg.conv_pos_groups)
        nn.init.normal_(conv.weight, mean=0, std=math.sqrt(4 / (cfg.conv_pos * dim)))
        nn.init.constant_(conv.bias, 0)
        self.even = cfg.conv_pos % 2 == 0
        self.pos_conv = nn.Sequential(weight_norm(conv, name="weight", dim=2))

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        y = self.pos_conv(x.transpose(1, 2))
        if self.even:  # an even kernel yields one extra frame
            y = y[..., :-1]
        return F.gelu(y).transpose(1, 2)


def add_positions(x: torch.Tensor, padding_mask: torch.Tensor | None, conv: nn.Module | None,
                  sine: nn.Module | None) -> torch.Tensor:
    """``x`` plus its convolutional, then its sinusoidal positions (either None when off)."""
    if conv is not None:
        x = x + conv(x, padding_mask)
    if sine is not None:
        x = x + sine(x.shape[1], padding_mask).to(x.dtype)
    return x
