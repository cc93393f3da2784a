"""Reading an exported folder (``mae-ast-export-hf``) as a checkpoint (``mae_ast.loading``
builds the model), and the one mapping between the package's state dicts and the folder's.

``model.safetensors`` holds the weights under the package's names: the encoder's at the top
(``MAEASTModel``), a classifier's encoder under ``mae_ast.`` (transformers'
``base_model_prefix``, so either folder loads into either class). The sine table is left
out (a formula, recomputed at load). Needs safetensors, not transformers."""

from __future__ import annotations

import json
import os

import torch

from ..checkpoints import CLASSIFIER, ENCODER, CheckpointError
from .encoder_fields import ENCODER_DEFAULTS

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
BASE_PREFIX = "mae_ast."  # MAEASTPreTrainedModel.base_model_prefix
BACKBONE_PREFIX = "backbone."  # MAE_AST_Classifier's encoder


EXPORTED_FIELDS = tuple(ENCODER_DEFAULTS)  # the MAE_AST_Config fields config.json carries

# torch's old weight norm (the package's, the original's keys) -> its parametrization (transformers').
WEIGHT_NORM = {".weight_g": ".parametrizations.weight.original0", ".weight_v": ".parametrizations.weight.original1"}


def is_recomputed(key: str) -> bool:
    """Buffers the folder leaves out: the sine position table."""
    return key.endswith("sine_pos_embed.pe")


def _rename(key: str, prefix: tuple[str, str] | None, suffixes) -> str:
    """``key`` with the leading ``prefix[0]`` made ``prefix[1]`` and each (old, new) suffix swapped."""
    if prefix and key.startswith(prefix[0]):
        key = prefix[1] + key[len(prefix[0]):]
    for old, new in suffixes:
        key = key[: -len(old)] + new if key.endswith(old) else key
    return key


def to_folder(state: dict[str, torch.Tensor], classifier: bool) -> dict[str, torch.Tensor]:
    """A package state dict (``MAE_AST`` encoder or ``MAE_AST_Classifier``) -> the folder's keys."""
    prefix = (BACKBONE_PREFIX, BASE_PREFIX) if classifier else None
    return {_rename(k, prefix, WEIGHT_NORM.items()): v for k, v in state.items() if not is_recomputed(k)}


def from_folder(weights: dict[str, torch.Tensor], model: torch.nn.Module, classifier: bool
                ) -> dict[str, torch.Tensor]:
    """``to_folder``'s inverse, the recomputed buffers taken from ``model`` as built."""
    own = model.state_dict()
    prefix = (BASE_PREFIX, BACKBONE_PREFIX) if classifier else None
    suffixes = [(new, old) for old, new in WEIGHT_NORM.items()]
    return {**{k: own[k] for k in own if is_recomputed(k)},
            **{_rename(k, prefix, suffixes): v for k, v in weights.items()}}


def is_exported(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG))


def read(path: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, weights) of an exported folder, or a CheckpointError naming what is wrong."""
    from safetensors.torch import load_file

    for name in (CONFIG, WEIGHTS):
        if not os.path.isfile(os.path.join(path, name)):
            raise CheckpointError(f"{path}: no {name}; export a folder with mae-ast-export-hf CHECKPOINT {path}")
    with open(os.path.join(path, CONFIG)) as f:
        config = json.load(f)
    if config.get("model_type") != "mae_ast":
        raise CheckpointError(f"{path}/{CONFIG}: model_type is {config.get('model_type')!r}, not 'mae_ast'")
    return config, load_file(os.path.join(path, WEIGHTS))


def kind(config: dict) -> str:
    """``CLASSIFIER`` or ``ENCODER``: what an exported folder's config.json holds."""
    return CLASSIFIER if "MAEASTForAudioClassification" in config.get("architectures", []) else ENCODER


def settings(config: dict) -> dict:
    """config.json as a classifier checkpoint's ``cfg.model`` (``build_backbone`` leaves out the decoder)."""
    encoder = {k: config[k] for k in EXPORTED_FIELDS if k in config}
    out = {"encoder": encoder, "features": {"sample_rate": config["sampling_rate"],
                                            "feature_dim": config["num_mel_bins"], "deltas": config["deltas"]}}
    if kind(config) == CLASSIFIER:
        out.update(class_names=[config["id2label"][str(i)] for i in range(len(config["id2label"]))],
                   multi_label=bool(config["multi_label"]), target_length=int(config["target_length"]),
                   head_dropout=config.get("head_dropout"), head_norm=config.get("head_norm"))
    return out
