"""The encoder of a ``mae_ast_classifier``: a saved classifier's (``cfg.features`` set:
rebuilt from its config alone, never reading the pretraining checkpoint or data again),
``cfg.pretrained_checkpoint``'s (a pretraining or classifier ``.pt`` or an exported folder,
opened by the task's ``open_pretrained``: ``loading.open_checkpoint``, as every loader), or
random init. ``cfg``'s dropout
fields override the encoder's in all three.
"""

from __future__ import annotations

import logging
from typing import Any

from ..checkpoints import PRETRAINING
from ..data.features import FeatureSpec
from .builders import PRETRAINING_ARCHITECTURE, build_backbone, encoder_config, strip_pretraining
from .classifier_config import DROPOUT_FIELDS
from .mae_ast import MAE_AST

logger = logging.getLogger(__name__)


def classifier_encoder(cfg: Any, task: Any) -> tuple[MAE_AST, dict]:
    """(decoder-free encoder, its complete config) for the classifier config ``cfg``."""
    dropouts = {k: getattr(cfg, k) for k in DROPOUT_FIELDS if getattr(cfg, k) is not None}
    asked = {**dict(cfg.encoder or {}), **dropouts}
    if cfg.features is not None:
        return build_backbone(asked, dict(cfg.features)), asked
    if cfg.pretrained_checkpoint:
        if cfg.encoder is not None:
            raise ValueError("model.encoder is for random init; with model.pretrained_checkpoint the "
                             "architecture is the checkpoint's (set model.dropout etc. to change dropouts)")
        ck = task.open_pretrained(cfg.pretrained_checkpoint)  # loading.open_checkpoint: models sit below it
        pretraining = ck.kind == PRETRAINING
        encoder = encoder_config(ck.settings) if pretraining else dict(ck.settings["encoder"])
        backbone = strip_pretraining(ck.model) if pretraining else ck.encoder
        logger.info(f"encoder initialised from {cfg.pretrained_checkpoint}")
        # As built: training mode, every parameter trainable (a linear probe's encoder was frozen).
        return with_dropouts(backbone.train().requires_grad_(True), encoder, dropouts)
    # Every field spelled out: the checkpoint rebuilds the same model whatever the defaults become.
    encoder = {**PRETRAINING_ARCHITECTURE, **asked}
    backbone = build_backbone(encoder, FeatureSpec.from_task_cfg(task.cfg).task_fields())  # refuses unknown fields first
    logger.info(f"model.pretrained_checkpoint=null: encoder randomly initialised, architecture of "
                f"config/pretrain/mae_ast.yaml{f' with {asked}' if asked else ''}: {describe_encoder(encoder)}")
    return backbone, encoder


def with_dropouts(backbone: MAE_AST, encoder: dict, dropouts: dict) -> tuple[MAE_AST, dict]:
    """A loaded encoder rebuilt with other dropouts (modules take their rate at construction)."""
    if not dropouts:
        return backbone, encoder
    encoder = {**encoder, **dropouts}
    rebuilt = build_backbone(encoder, backbone.feature_spec.task_fields())
    rebuilt.load_state_dict(backbone.state_dict(), strict=True)
    return rebuilt, encoder


def describe_encoder(encoder: dict) -> str:
    e = encoder
    positions = [name for name, on in (("sinusoidal", e["enc_sine_pos"]), ("convolutional", e["enc_conv_pos"])) if on]
    return (f"{e['encoder_layers']} layers x {e['encoder_embed_dim']}-d, {e['ast_kernel_size_time']}x"
            f"{e['ast_kernel_size_chan']} patches, {' + '.join(positions) or 'NO'} positions, dropout "
            f"{e['dropout']}, attention dropout {e['attention_dropout']}, layerdrop {e['encoder_layerdrop']}")
