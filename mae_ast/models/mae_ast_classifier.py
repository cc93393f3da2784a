"""``mae_ast_classifier``: a MAE-AST encoder with a pooled linear head (timm's
``forward_features`` -> ``forward_head``: mean over valid tokens, ``fc_norm``, dropout, Linear).

Why the probe's ``fc_norm`` is a BatchNorm: the encoder is post-LN, so each pooled feature
carries a LayerNorm's per-feature shift far larger than its spread across clips; a per-clip
LayerNorm leaves that constant in place and Adam on the Linear after it crawls.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .._fairseq import BaseFairseqModel, register_model
from ..data.augment import augment_normalised
from .classifier_config import MAE_AST_Classifier_Config
from .classifier_encoder import classifier_encoder
from .head_norm import build_head_norm, mean_over_valid
from .layer_decay import set_optim_overrides
from .mae_ast import MAE_AST

# The head settings of a saved classifier; the rest of its config is training-only.
HEAD_FIELDS = ("head_dropout", "freeze_encoder", "pooling", "head_norm")


def evaluation_settings(saved: dict) -> MAE_AST_Classifier_Config:
    """The settings that rebuild a saved classifier for scoring: its head settings only."""
    return MAE_AST_Classifier_Config(**{k: saved[k] for k in HEAD_FIELDS if saved.get(k) is not None})


def resolve_head_norm(cfg: Any) -> str:
    """``cfg.head_norm``, null resolved as its help says (why: module docstring)."""
    chosen = getattr(cfg, "head_norm", None)
    if chosen is not None:
        return str(getattr(chosen, "value", chosen))
    return "batchnorm" if cfg.freeze_encoder else "layernorm"


@register_model("mae_ast_classifier", dataclass=MAE_AST_Classifier_Config)
class MAE_AST_Classifier(BaseFairseqModel):
    def __init__(self, cfg: Any, backbone: MAE_AST, encoder: dict, num_classes: int,
                 augment: dict | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.encoder_cfg = dict(encoder)
        self.features = backbone.feature_spec.task_fields()
        self.augment = {"freqm": 0, "timem": 0, "noise": False, **(augment or {})}
        dim = backbone.cfg.encoder_embed_dim
        self.head_norm = resolve_head_norm(cfg)
        self.fc_norm = build_head_norm(self.head_norm, dim)  # one name for both kinds: one key set
        self.head_drop = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        if cfg.freeze_encoder:
            self.backbone.requires_grad_(False)
        self.needs_param_groups = set_optim_overrides(self, cfg.layer_decay, cfg.head_lr_scale)

    @classmethod
    def build_model(cls, cfg: MAE_AST_Classifier_Config, task) -> MAE_AST_Classifier:
        backbone, encoder = classifier_encoder(cfg, task)
        task.use_feature_spec(backbone.feature_spec)
        augment = {k: getattr(task.cfg, k) for k in ("freqm", "timem", "noise")}
        return cls(cfg, backbone, encoder, len(task.class_names), augment)

    def snapshot(self) -> dict:
        """The ``cfg.model`` fields that rebuild this model without checkpoint or data folder."""
        return {"encoder": dict(self.encoder_cfg), "features": dict(self.features), "head_norm": self.head_norm}

    def train(self, mode: bool = True) -> MAE_AST_Classifier:
        super().train(mode)
        if self.cfg.freeze_encoder:  # linear probe: BatchNorm statistics and dropout stay fixed
            self.backbone.eval()
        return self

    def forward_features(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None) -> dict:
        """``MAE_AST.forward_features``, with training-time augmentation."""
        a = self.augment
        augment = ((lambda x: augment_normalised(x, padding_mask, a["freqm"], a["timem"], a["noise"]))
                   if self.training else None)
        return self.backbone.forward_features(source, padding_mask, augment=augment)

    @staticmethod
    def pool(features: dict) -> torch.Tensor:
        """Mean over each clip's valid tokens: ``(B, dim)``."""
        return mean_over_valid(features["x"], features["padding_mask"])

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(self.fc_norm(pooled)))

    def forward_head(self, features: dict, pre_logits: bool = False) -> torch.Tensor:
        """Tokens -> pooled (``pre_logits``) or logits ``(B, num_classes)``."""
        pooled = self.pool(features)
        return pooled if pre_logits else self.classify(pooled)

    def forward(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(source, padding_mask))
