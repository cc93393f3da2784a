"""fairseq's ``TransformerSentenceEncoderLayer`` with the original's parameter names and
numerics: one home for the block, used by the package's encoder and decoder and shipped in
exported folders. Attention keeps ``q_proj/k_proj/v_proj/out_proj`` (checkpoints load
strictly) but runs one fused matmul; ``attend`` is the one step a subclass swaps (the
exported folder runs transformers' attention functions there).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

# The FFN activations a block runs (MAE_AST_Config's choices).
ACTIVATION_FNS = {"gelu": F.gelu, "relu": F.relu}


class MultiheadSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any) -> torch.Tensor:
        """``(B, heads, T, head_dim)`` each -> ``(B, T, heads, head_dim)``; ``mask`` is a key
        padding mask (True marks padding) or None."""
        attn_mask = None if mask is None else ~mask[:, None, None, :]  # SDPA wants True = attend
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return x.transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: Any = None) -> torch.Tensor:
        B, T, C = x.shape
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        qkv = F.linear(x, weight, bias).view(B, T, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        return self.out_proj(self.attend(q, k, v, mask).reshape(B, T, C))


class TransformerSentenceEncoderLayer(nn.Module):
    """One block of width ``dim``, post-LN unless ``layer_norm_first``; its other settings are
    ``cfg``'s (``MAE_AST_Config`` or the exported configuration: the same field names)."""

    def __init__(self, dim: int, cfg: Any) -> None:
        super().__init__()
        if cfg.activation_fn not in ACTIVATION_FNS:
            raise ValueError(f"activation_fn {cfg.activation_fn!r} is not supported ({', '.join(ACTIVATION_FNS)})")
        self.activation = ACTIVATION_FNS[cfg.activation_fn]
        self.layer_norm_first = cfg.layer_norm_first
        self.self_attn = self.build_attention(dim, cfg)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.activation_dropout)
        self.dropout3 = nn.Dropout(cfg.dropout)

    def build_attention(self, dim: int, cfg: Any) -> MultiheadSelfAttention:
        return MultiheadSelfAttention(dim, cfg.encoder_attention_heads, cfg.attention_dropout)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout3(self.fc2(self.dropout2(self.activation(self.fc1(x)))))

    def forward(self, x: torch.Tensor, mask: Any = None) -> torch.Tensor:
        """``mask`` goes to the attention as it is (see ``MultiheadSelfAttention.attend``)."""
        if self.layer_norm_first:
            x = x + self.dropout1(self.self_attn(self.self_attn_layer_norm(x), mask))
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.dropout1(self.self_attn(x, mask)))
        return self.final_layer_norm(x + self._ffn(x))
