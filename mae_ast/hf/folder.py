"""Reading an exported folder (``mae-ast-export-hf``) back into the package's models, and
the one mapping between the package's state dicts and the folder's.

``config.json`` carries the encoder's ``MAE_AST_Config`` fields (``EXPORTED_FIELDS``)
and the feature spec at its top level, as ``MAEASTConfig`` reads them (and, for a
classifier, its class names, ``multi_label``, ``target_length`` and head settings);
``model.safetensors`` the weights under the package's names: the encoder's at the top
(``MAEASTModel``), a classifier's encoder under ``mae_ast.`` (transformers'
``base_model_prefix``, so either folder loads into either class) beside its ``fc_norm``
and ``head``. The sine table is left out (a formula, recomputed at load). Folders from
before this layout (an ``encoder`` dict; ``backbone.`` / ``classifier.backbone.`` keys)
still load here. Needs safetensors, not transformers."""

from __future__ import annotations

import json
import os

import torch

from ..models.builders import build_backbone
from ..models.mae_ast import MAE_AST
from ..models.mae_ast_classifier import MAE_AST_Classifier, evaluation_settings

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
BASE_PREFIX = "mae_ast."  # MAEASTPreTrainedModel.base_model_prefix
BACKBONE_PREFIX = "backbone."  # MAE_AST_Classifier's encoder
LEGACY_PREFIXES = ("backbone.", "classifier.")  # encoder / classifier folders before issue 22
# The MAE_AST_Config fields an exported encoder reads (configuration.py's ENCODER_DEFAULTS;
# a test keeps the two equal); the decoder and masking fields are pretraining-only.
EXPORTED_FIELDS = ("ast_kernel_size_chan", "ast_kernel_size_time", "ast_kernel_stride_chan", "ast_kernel_stride_time",
                   "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                   "activation_fn", "layer_norm_first", "dropout", "attention_dropout", "activation_dropout",
                   "encoder_layerdrop", "conv_pos", "conv_pos_groups", "max_token_length", "enc_sine_pos",
                   "enc_conv_pos")

# torch's old weight norm (the package's, the original's keys) -> its parametrization (transformers').
WEIGHT_NORM = {".weight_g": ".parametrizations.weight.original0", ".weight_v": ".parametrizations.weight.original1"}


def is_recomputed(key: str) -> bool:
    """Buffers the folder leaves out: the sine position table."""
    return key.endswith("sine_pos_embed.pe")


def to_folder(state: dict[str, torch.Tensor], classifier: bool) -> dict[str, torch.Tensor]:
    """A package state dict (``MAE_AST`` encoder or ``MAE_AST_Classifier``) -> the folder's keys."""
    out = {}
    for key, value in state.items():
        if is_recomputed(key):
            continue
        if classifier:
            key = BASE_PREFIX + key[len(BACKBONE_PREFIX):] if key.startswith(BACKBONE_PREFIX) else key
        for old, new in WEIGHT_NORM.items():
            key = key[: -len(old)] + new if key.endswith(old) else key
        out[key] = value
    return out


def from_folder(weights: dict[str, torch.Tensor], model: torch.nn.Module, classifier: bool
                ) -> dict[str, torch.Tensor]:
    """The folder's keys -> ``model``'s state dict (``to_folder``'s inverse), the recomputed
    buffers taken from ``model`` as built."""
    if any(k.startswith(LEGACY_PREFIXES) for k in weights):
        out = {k.split(".", 1)[1] if k.startswith(LEGACY_PREFIXES) else k: v for k, v in weights.items()}
    elif classifier:
        out = {(BACKBONE_PREFIX + k[len(BASE_PREFIX):] if k.startswith(BASE_PREFIX) else k): v
               for k, v in weights.items()}
    else:
        out = dict(weights)
    for new, old in ((n, o) for o, n in WEIGHT_NORM.items()):
        out = {(k[: -len(new)] + old if k.endswith(new) else k): v for k, v in out.items()}
    own = model.state_dict()
    return {**{k: own[k] for k in own if is_recomputed(k)}, **out}


def is_exported(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG))


def read(path: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, weights) of an exported folder, or a ValueError naming what is wrong."""
    from safetensors.torch import load_file

    for name in (CONFIG, WEIGHTS):
        if not os.path.isfile(os.path.join(path, name)):
            raise ValueError(f"{path}: no {name}; export a folder with mae-ast-export-hf CHECKPOINT {path}")
    config = read_config(path)
    if config.get("model_type") != "mae_ast":
        raise ValueError(f"{path}/{CONFIG}: model_type is {config.get('model_type')!r}, not 'mae_ast'")
    return config, load_file(os.path.join(path, WEIGHTS))


def read_config(path: str) -> dict:
    with open(os.path.join(path, CONFIG)) as f:
        return json.load(f)


def is_classifier(config: dict) -> bool:
    return "MAEASTForAudioClassification" in config.get("architectures", [])


def encoder_fields(config: dict) -> dict:
    """The ``MAE_AST_Config`` fields of a folder's encoder; no decoder is built (one of
    the encoder's width, no layers: ``build_backbone`` drops it anyway)."""
    if "encoder" in config:  # before issue 22
        return dict(config["encoder"])
    fields = {k: config[k] for k in EXPORTED_FIELDS if k in config}
    return {**fields, "decoder_embed_dim": fields.get("encoder_embed_dim", 768), "decoder_layers": 0}


def features(config: dict) -> dict:
    if "features" in config:  # before issue 22
        return dict(config["features"])
    return {"sample_rate": config["sampling_rate"], "feature_dim": config["num_mel_bins"], "deltas": config["deltas"]}


def build_classifier(config: dict) -> MAE_AST_Classifier:
    settings = evaluation_settings({k: config.get(k) for k in ("head_dropout", "head_norm")})
    encoder = encoder_fields(config)
    return MAE_AST_Classifier(settings, build_backbone(encoder, features(config)), encoder, len(config["id2label"]))


def load_encoder(path: str) -> MAE_AST:
    """The (decoder-free) encoder of an exported encoder or classifier folder, eval mode, CPU."""
    config, weights = read(path)
    if is_classifier(config):
        model = build_classifier(config)
        model.load_state_dict(from_folder(weights, model, classifier=True), strict=True)
        return model.backbone.eval()
    model = build_backbone(encoder_fields(config), features(config))
    model.load_state_dict(from_folder(weights, model, classifier=False), strict=True)
    return model.eval()


def classifier_parts(path: str) -> tuple[MAE_AST_Classifier, list[str], bool, int]:
    """(model, class names, multi_label, target_length) of an exported classifier folder:
    what ``mae_ast.classifier.Classifier`` is made of."""
    config, weights = read(path)
    if not is_classifier(config):
        raise ValueError(f"{path}: an exported encoder, not a classifier; load it with mae_ast.load")
    model = build_classifier(config)
    model.load_state_dict(from_folder(weights, model, classifier=True), strict=True)
    names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    return model, names, bool(config["multi_label"]), int(config["target_length"])
