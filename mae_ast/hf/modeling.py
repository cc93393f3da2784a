"""transformers models around the package's own modules: ``MAEASTModel`` (the encoder,
``extract_layers``' outputs) and ``MAEASTForAudioClassification`` (``MAE_AST_Classifier``:
mean over valid tokens, LayerNorm, Linear).

``hidden_states`` are the outputs of encoder layers 1..L, as ``extract_layers`` and the
s3prl upstream give them (no input embedding first, unlike most transformers models).
Input: ``input_values`` ``(B, frames, columns)`` from ``MAEASTFeatureExtractor`` and its
``attention_mask`` (1 = a real frame)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput

from ..models.builders import build_backbone
from ..models.mae_ast_classifier import MAE_AST_Classifier, evaluation_settings
from .configuration import MAEASTConfig


@dataclass
class MAEASTModelOutput(BaseModelOutput):
    """``BaseModelOutput`` plus which output rows hold a clip (1) and which are padding (0)."""

    attention_mask: torch.Tensor | None = None


def frame_padding(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """transformers' attention mask (1 = real) -> the package's padding mask (True = padding)."""
    return None if attention_mask is None else attention_mask == 0


class MAEASTPreTrainedModel(PreTrainedModel):
    config_class = MAEASTConfig
    base_model_prefix = "mae_ast"
    main_input_name = "input_values"

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Nothing to do: every weight comes from model.safetensors, and modules are built
        (and initialised) by the package's own constructors."""


class MAEASTModel(MAEASTPreTrainedModel):
    def __init__(self, config: MAEASTConfig) -> None:
        super().__init__(config)
        self.backbone = build_backbone(config.encoder, config.features)
        self.post_init()

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                **kwargs: Any) -> MAEASTModelOutput | tuple:
        out = self.backbone.extract_layers(input_values, frame_padding(attention_mask),
                                           time_aligned=self.config.time_aligned)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        result = MAEASTModelOutput(last_hidden_state=out["last_hidden_state"],
                                   hidden_states=tuple(out["hidden_states"]) if output_hidden_states else None,
                                   attention_mask=(~out["padding_mask"]).long())
        return result if return_dict is not False else result.to_tuple()


class MAEASTForAudioClassification(MAEASTPreTrainedModel):
    def __init__(self, config: MAEASTConfig) -> None:
        super().__init__(config)
        settings = evaluation_settings({"head_dropout": config.head_dropout, "head_norm": config.head_norm})
        backbone = build_backbone(config.encoder, config.features)
        self.classifier = MAE_AST_Classifier(settings, backbone, config.encoder, config.num_labels)
        self.post_init()

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, return_dict: bool | None = None,
                **kwargs: Any) -> SequenceClassifierOutput | tuple:
        """Logits; ``softmax`` (single-label) or ``sigmoid`` (``config.multi_label``) of them
        are ``load_classifier(...).scores``. With ``labels``: cross-entropy or BCE."""
        logits = self.classifier(input_values, frame_padding(attention_mask))
        loss = None
        if labels is not None:
            loss = (F.binary_cross_entropy_with_logits(logits, labels.float()) if self.config.multi_label
                    else F.cross_entropy(logits, labels))
        result = SequenceClassifierOutput(loss=loss, logits=logits)
        return result if return_dict is not False else result.to_tuple()
