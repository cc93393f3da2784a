"""Reading an exported folder (``mae-ast-export-hf``) back into the package's models.

``config.json`` carries the encoder's ``MAE_AST_Config`` fields and the feature spec (and,
for a classifier, its class names, ``multi_label`` and ``target_length``);
``model.safetensors`` the weights under ``backbone.`` (encoder) or ``classifier.``
(``MAE_AST_Classifier``'s own keys). Needs safetensors, not transformers."""

from __future__ import annotations

import json
import os

import torch

from ..models.mae_ast import MAE_AST
from ..models.builders import build_backbone
from ..models.mae_ast_classifier import MAE_AST_Classifier, evaluation_settings

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
ENCODER_PREFIX = "backbone."
CLASSIFIER_PREFIX = "classifier."


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


def strip_prefix(weights: dict[str, torch.Tensor], prefix: str, path: str) -> dict[str, torch.Tensor]:
    out = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(f"{path}/{WEIGHTS}: no weights under {prefix!r} (found e.g. {sorted(weights)[:3]})")
    return out


def build_classifier(config: dict) -> MAE_AST_Classifier:
    settings = evaluation_settings({k: config.get(k) for k in ("head_dropout", "head_norm")})
    backbone = build_backbone(config["encoder"], config["features"])
    return MAE_AST_Classifier(settings, backbone, config["encoder"], len(config["id2label"]))


def load_encoder(path: str) -> MAE_AST:
    """The (decoder-free) encoder of an exported encoder or classifier folder, eval mode, CPU."""
    config, weights = read(path)
    if is_classifier(config):
        model = build_classifier(config)
        model.load_state_dict(strip_prefix(weights, CLASSIFIER_PREFIX, path), strict=True)
        return model.backbone.eval()
    model = build_backbone(config["encoder"], config["features"])
    model.load_state_dict(strip_prefix(weights, ENCODER_PREFIX, path), strict=True)
    return model.eval()


def classifier_parts(path: str) -> tuple[MAE_AST_Classifier, list[str], bool, int]:
    """(model, class names, multi_label, target_length) of an exported classifier folder:
    what ``mae_ast.classifier.Classifier`` is made of."""
    config, weights = read(path)
    if not is_classifier(config):
        raise ValueError(f"{path}: an exported encoder, not a classifier; load it with mae_ast.load")
    model = build_classifier(config)
    model.load_state_dict(strip_prefix(weights, CLASSIFIER_PREFIX, path), strict=True)
    names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    return model, names, bool(config["multi_label"]), int(config["target_length"])
