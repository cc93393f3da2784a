"""The ``MAE_AST_Config`` fields an exported encoder reads, with the package's defaults (a
test pins them); the decoder and masking fields are pretraining-only. Its own file, importing
nothing of the package or transformers: the folder reader and ``configuration.py`` both use it."""

from __future__ import annotations

from typing import Any

ENCODER_DEFAULTS: dict[str, Any] = {
    "ast_kernel_size_chan": 16, "ast_kernel_size_time": 16, "ast_kernel_stride_chan": 16,
    "ast_kernel_stride_time": 16, "encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12, "activation_fn": "gelu", "layer_norm_first": False, "dropout": 0.1,
    "attention_dropout": 0.1, "activation_dropout": 0.0, "encoder_layerdrop": 0.0, "conv_pos": 128,
    "conv_pos_groups": 16, "max_token_length": 48000, "enc_sine_pos": False, "enc_conv_pos": False,
}
