"""wav2vec 2.0's ``TransformerEncoder`` (without conv positions) over the package's blocks
(``encoder_layer.py``), with the original's parameter names and numerics, batch-first.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoder_layer import TransformerSentenceEncoderLayer
from .positions import SinusoidalPositionalEncoding as SineTable


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


class SinusoidalPositionalEncoding(SineTable):
    """The sin/cos table, a persistent buffer because the original's strict loaders (s3prl's
    too) expect ``*_sine_pos_embed.pe``. ``saved=False`` leaves it out of ``state_dict``; a
    state without it loads this module's own (it depends on dim and max_len alone)."""

    def __init__(self, dim: int, max_len: int, saved: bool = True) -> None:
        super().__init__(dim, max_len)
        self.saved = saved
        self.register_state_dict_post_hook(_leave_out_unsaved_table)
        self.register_load_state_dict_pre_hook(_fill_left_out_table)


def _leave_out_unsaved_table(module: SinusoidalPositionalEncoding, state_dict: dict, prefix: str, _meta) -> None:
    if not module.saved:
        state_dict.pop(prefix + "pe", None)


def _fill_left_out_table(module: SinusoidalPositionalEncoding, state_dict: dict, prefix: str, *_) -> None:
    state_dict.setdefault(prefix + "pe", module.pe)
