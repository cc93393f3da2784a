"""MAE_AST models from saved settings: the pretraining model and the decoder-free encoder
("backbone") of fine-tuning, feature extraction and s3prl.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from ..data.features import FeatureSpec
from .mae_ast import MAE_AST, MAE_AST_Config

ENCODER_FIELDS = {f.name for f in dataclasses.fields(MAE_AST_Config)} - {"_name"}
# Modules of the pretraining model an encoder never runs.
PRETRAINING_ONLY = ("decoder", "decoder_mask_emb", "post_enc_proj", "dec_conv_pos_embed", "dec_sine_pos_embed",
                    "final_proj_reconstruction", "final_proj_classification", "encoder_mask_emb", "layer_norm")
# The released architecture (config/pretrain/mae_ast.yaml's model settings; a test checks
# they are equal). Random-init classifiers start here, not from MAE_AST_Config's defaults
# (no positions at all, other dropouts), so "pretrained vs random init" differs in init only.
PRETRAINING_ARCHITECTURE = {
    "dropout_input": 0.1, "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0,
    "feature_grad_mult": 0.1, "encoder_layerdrop": 0.05, "decoder_layerdrop": 0.0,
    "encoder_layers": 12, "decoder_layers": 2, "random_mask_prob": 0.75,
    "enc_conv_pos": False, "enc_sine_pos": True, "dec_conv_pos": False, "dec_sine_pos": True,
    "ast_kernel_size_chan": 16, "ast_kernel_size_time": 16, "ast_kernel_stride_chan": 16, "ast_kernel_stride_time": 16,
    "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12, "activation_fn": "gelu",
    "layer_norm_first": False, "use_post_enc_proj": False, "decoder_embed_dim": 768, "mask_length": 10,
    "mask_selection": "static", "mask_other": 0.0, "no_mask_overlap": False, "mask_min_space": 0,
    "conv_pos": 128, "conv_pos_groups": 16, "checkpoint_activations": False, "compile_blocks": False,
    "max_token_length": 48000, "save_sine_tables": True,
}
# Task fields a pretraining checkpoint may leave out (older configs), spelled out: the
# original's model reads task_cfg.feature_dim itself.
TASK_DEFAULTS = {"feature_type": "fbank", "mask_type": "random_mask", **FeatureSpec().task_fields()}


def task_namespace(**fields) -> SimpleNamespace:
    """The task settings a MAE_AST reads, defaults filled in, for use outside fairseq."""
    return SimpleNamespace(**{**TASK_DEFAULTS, **fields})


def build_backbone(encoder: dict, features: dict) -> MAE_AST:
    """A decoder-free MAE_AST of this architecture and input (random weights)."""
    unknown = set(encoder) - ENCODER_FIELDS
    if unknown:
        raise ValueError(f"model.encoder: unknown MAE_AST_Config fields {sorted(unknown)}")
    # The decoder is deleted at once, so its settings must not refuse an encoder (a 64-d
    # encoder under a 768-d decoder would): build it empty, at the encoder's width.
    width = encoder.get("encoder_embed_dim", MAE_AST_Config.encoder_embed_dim)
    no_decoder = {"decoder_layers": 0, "decoder_embed_dim": width, "use_post_enc_proj": False}
    return strip_pretraining(MAE_AST(MAE_AST_Config(**{**encoder, **no_decoder}), task_namespace(**features)))


def strip_pretraining(model: MAE_AST) -> MAE_AST:
    """Delete what only pretraining uses (absent from the state dict and from
    data-parallel's unused-parameter check)."""
    for name in PRETRAINING_ONLY:
        if hasattr(model, name):
            delattr(model, name)
    return model


def encoder_config(model_cfg: dict) -> dict:
    """The MAE_AST_Config fields of a pretraining model config."""
    return {k: v for k, v in model_cfg.items() if k in ENCODER_FIELDS}




def build_pretraining(model_cfg: dict, task_cfg: dict) -> MAE_AST:
    """The pretraining model (random weights) of a checkpoint's ``cfg.model`` and ``cfg.task``."""
    return MAE_AST(MAE_AST_Config(**encoder_config(model_cfg)), task_namespace(**task_cfg))


def original_model(model: MAE_AST):
    """The original code (s3prl 0.4.18's copy, the reference of tests and benchmarks) holding
    ``model``'s weights, in eval mode."""
    from s3prl.upstream.mae_ast import mae_ast as original

    cfg = SimpleNamespace(**{k: getattr(model.cfg, k) for k in model.cfg.__dataclass_fields__})
    orig = original.MAE_AST(cfg, model.task_cfg)
    orig.load_state_dict(model.state_dict(), strict=True)
    return orig.eval()
