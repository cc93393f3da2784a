"""MAE-AST configuration: the encoder's architecture, its input and (for a classifier) its head.

The architecture fields keep the names of the package's ``MAE_AST_Config`` (so a
checkpoint's ``cfg.model`` maps onto them one to one); transformers' usual names
(``hidden_size``, ``num_hidden_layers``, ...) are aliases of them."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from .encoder_fields import ENCODER_DEFAULTS


class MAEASTConfig(PretrainedConfig):
    model_type = "mae_ast"
    attribute_map = {"hidden_size": "encoder_embed_dim", "num_hidden_layers": "encoder_layers",
                     "num_attention_heads": "encoder_attention_heads", "intermediate_size": "encoder_ffn_embed_dim",
                     "hidden_act": "activation_fn", "layerdrop": "encoder_layerdrop"}

    def __init__(self, sampling_rate: int = 16000, num_mel_bins: int = 128, deltas: bool = False,
                 time_aligned: bool = True, multi_label: bool = False, target_length: int | None = None,
                 head_dropout: float = 0.0, head_norm: str = "layernorm", loss: str | None = None,
                 **kwargs: Any) -> None:
        for name, default in ENCODER_DEFAULTS.items():
            setattr(self, name, kwargs.pop(name, default))
        self.sampling_rate = int(sampling_rate)
        self.num_mel_bins = int(num_mel_bins)
        self.deltas = bool(deltas)
        # Patch models: average the channel blocks of each time step (extract_layers' default).
        self.time_aligned = bool(time_aligned)
        # Classifiers: sigmoid or softmax scores, frames per clip, the head (model.head_*).
        self.multi_label = bool(multi_label)
        self.target_length = target_length
        self.head_dropout = float(head_dropout)
        self.head_norm = str(head_norm)
        self.loss = loss  # the fine-tune's criterion.loss (None: written before it was recorded)
        super().__init__(**kwargs)

    @property
    def feature_width(self) -> int:
        """Columns per frame: the mel bins, tripled when deltas and delta-deltas follow."""
        return self.num_mel_bins * (3 if self.deltas else 1)
