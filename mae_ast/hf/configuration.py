"""``MAEASTConfig``: a MAE-AST checkpoint's architecture and input, for transformers.

``encoder`` holds the ``MAE_AST_Config`` fields and ``features`` the feature spec
(``sample_rate``, ``feature_dim``, ``deltas``), exactly as a fine-tuned classifier
checkpoint stores them in its ``cfg.model``, so one builder (``build_backbone``) makes
the encoder in the package and in an exported folder alike."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig


class MAEASTConfig(PretrainedConfig):
    model_type = "mae_ast"

    def __init__(self, encoder: dict | None = None, features: dict | None = None, time_aligned: bool = True,
                 multi_label: bool = False, target_length: int | None = None, head_dropout: float = 0.0,
                 head_norm: str = "layernorm", **kwargs: Any) -> None:
        self.encoder = dict(encoder or {})
        self.features = dict(features or {"sample_rate": 16000, "feature_dim": 128, "deltas": False})
        # Patch models: average the channel blocks of each time step (extract_layers' default).
        self.time_aligned = bool(time_aligned)
        # Classifiers only: sigmoid or softmax scores, and the frames each clip is cropped/padded to.
        self.multi_label = bool(multi_label)
        self.target_length = target_length
        self.head_dropout = float(head_dropout)
        # The classifier's model.head_norm; folders exported before it existed have the LayerNorm.
        self.head_norm = str(head_norm)
        self.hidden_size = int(self.encoder.get("encoder_embed_dim", 768))
        self.num_hidden_layers = int(self.encoder.get("encoder_layers", 12))
        super().__init__(**kwargs)
