"""fairseq's ``TransformerSentenceEncoderLayer`` and wav2vec 2.0's ``TransformerEncoder``
(without conv positions), with the original's parameter names and numerics. Attention
keeps ``q_proj/k_proj/v_proj/out_proj`` (checkpoints load strictly) but runs one fused
matmul and ``F.scaled_dot_product_attention``, batch-first.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .positions import sinusoid_table


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

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        qkv = F.linear(x, weight, bias).view(B, T, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        attn_mask = None
        if key_padding_mask is not None:  # True marks padding; SDPA wants True = attend
            attn_mask = ~key_padding_mask[:, None, None, :]
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(x.transpose(1, 2).reshape(B, T, C))


class TransformerSentenceEncoderLayer(nn.Module):
    """One block of width ``dim``; its other settings are ``cfg``'s (``MAE_AST_Config`` fields)."""

    def __init__(self, dim: int, cfg) -> None:
        super().__init__()
        if cfg.activation_fn not in ("gelu", "relu"):
            raise ValueError(f"activation_fn {cfg.activation_fn!r} is not supported (gelu, relu)")
        self.activation = F.gelu if cfg.activation_fn == "gelu" else F.relu
        self.layer_norm_first = cfg.layer_norm_first
        self.self_attn = MultiheadSelfAttention(dim, cfg.encoder_attention_heads, cfg.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.activation_dropout)
        self.dropout3 = nn.Dropout(cfg.dropout)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout3(self.fc2(self.dropout2(self.activation(self.fc1(x)))))

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.dropout1(self.self_attn(self.self_attn_layer_norm(x), padding_mask))
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.dropout1(self.self_attn(x, padding_mask)))
        return self.final_layer_norm(x + self._ffn(x))


def init_bert_params(module: nn.Module) -> None:
    """BERT init as fairseq's ``init_bert_params``: linear weights N(0, 0.02), biases 0."""
    if isinstance(module, nn.Linear):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if module.bias is not None:
            module.bias.data.zero_()


class TransformerEncoder(nn.Module):
    """The encoder, or with ``decoder`` the decoder's depth, width and layerdrop (FFN size
    and heads are the encoder's)."""

    def __init__(self, cfg, decoder: bool = False) -> None:
        super().__init__()
        dim = cfg.decoder_embed_dim if decoder else cfg.encoder_embed_dim
        depth = cfg.decoder_layers if decoder else cfg.encoder_layers
        self.layerdrop = cfg.decoder_layerdrop if decoder else cfg.encoder_layerdrop
        self.dropout = cfg.dropout
        self.layer_norm_first = cfg.layer_norm_first
        self.layers = nn.ModuleList(TransformerSentenceEncoderLayer(dim, cfg) for _ in range(depth))
        self.layer_norm = nn.LayerNorm(dim)
        self.apply(init_bert_params)

    def forward(
        self, x: torch.Tensor, padding_mask: torch.Tensor | None = None, layer: int | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the output and each layer's output (input excluded). ``layer`` (0-based)
        stops after that layer, as the original's ``output_layer - 1``."""
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, p=self.dropout, training=self.training)
        hidden_states = []
        compiling = torch.compiler.is_compiling()
        drops = None  # one uniform draw per layer; a layer runs when its draw exceeds layerdrop
        if self.training and self.layerdrop > 0:
            # Eager: on the CPU generator (same layers on any device, no device sync). Compiled:
            # on the activations' device (no host-to-device copy in the graph).
            drops = torch.rand(len(self.layers), device=x.device if compiling else None)
        for i, block in enumerate(self.layers):
            if compiling and drops is not None:
                # A branch on a drawn value would break the graph: run the block, keep its
                # input where dropped (its parameters get a zero gradient instead of none).
                x = torch.where(drops[i] > self.layerdrop, block(x, padding_mask), x)
                hidden_states.append(x)
            elif drops is None or drops[i] > self.layerdrop:  # eager: a dropped block is skipped, as the original
                x = block(x, padding_mask)
                hidden_states.append(x)
            if i == layer:
                return x, hidden_states
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, hidden_states


class SinusoidalPositionalEncoding(nn.Module):
    """sin/cos table (base 10000), a persistent buffer because the original's strict loaders
    (s3prl's too) expect ``*_sine_pos_embed.pe``. ``saved=False`` leaves it out of
    ``state_dict``; a state without it loads this module's own (it depends on dim and
    max_len alone)."""

    def __init__(self, dim: int, max_len: int, saved: bool = True) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoid_table(dim, max_len))
        self.saved = saved
        self.register_state_dict_post_hook(_leave_out_unsaved_table)
        self.register_load_state_dict_pre_hook(_fill_left_out_table)

    def forward(self, length: int, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(1, length, dim)`` or, with a padding mask, ``(B, length, dim)`` zeroed at pads."""
        if length > self.pe.shape[1]:
            raise ValueError(
                f"{length} tokens exceed model.max_token_length={self.pe.shape[1]}; "
                "crop the input or raise max_token_length"
            )
        pe = self.pe[:, :length]
        if padding_mask is not None:
            pe = pe.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return pe


def _leave_out_unsaved_table(module: SinusoidalPositionalEncoding, state_dict: dict, prefix: str, _meta) -> None:
    if not module.saved:
        state_dict.pop(prefix + "pe", None)


def _fill_left_out_table(module: SinusoidalPositionalEncoding, state_dict: dict, prefix: str, *_) -> None:
    state_dict.setdefault(prefix + "pe", module.pe)
