"""Reading fairseq checkpoint files: one place that opens a file, says what is wrong with
it and tells a pretraining checkpoint from a classifier, so a bad file gets the same message
everywhere. It imports no model (``mae_ast.loading`` builds them).
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch
from omegaconf import OmegaConf

# Keys every MAE-AST pretraining state dict has, whatever its depth and options.
PRETRAINING_KEYS = ("post_extract_proj.weight", "batch_norm.running_mean", "encoder.layer_norm.weight",
                    "decoder.layer_norm.weight", "encoder_mask_emb", "decoder_mask_emb")
CLASSIFIER_KEYS = ("backbone.post_extract_proj.weight", "head.weight")
PRETRAINING, CLASSIFIER = "pretraining", "classifier"
ENCODER = "encoder"  # an exported folder's decoder-free encoder (mae-ast-export-hf)


class CheckpointError(ValueError):
    """A file that is not a usable MAE-AST checkpoint; the message names it and says why."""


def as_dict(cfg: Any) -> dict:
    """A config section (dict, omegaconf node or namespace) as a plain dict."""
    if cfg is None:
        return {}
    if isinstance(cfg, dict):
        return dict(cfg)
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(vars(cfg))


def config_section(state: dict, name: str) -> dict:
    """``state["cfg"][name]`` (``model``, ``task``...) as a plain dict."""
    cfg = state.get("cfg")
    return as_dict(cfg.get(name) if isinstance(cfg, dict) else getattr(cfg, name, None))


def checkpoint_kind(state: dict) -> str | None:
    """``PRETRAINING``, ``CLASSIFIER`` (a fine-tuned ``mae_ast_classifier``) or None."""
    weights = state.get("model", {})
    if all(k in weights for k in CLASSIFIER_KEYS) and config_section(state, "model").get("encoder"):
        return CLASSIFIER
    if all(k in weights for k in PRETRAINING_KEYS):
        return PRETRAINING
    return None


def read_checkpoint(path: str, weights_only: bool = True, kinds: tuple[str, ...] = (PRETRAINING, CLASSIFIER),
                    mmap: bool = False) -> dict:
    """The dict of a MAE-AST checkpoint of one of ``kinds``; else ``CheckpointError`` saying what it is."""
    state = _load(path, weights_only, mmap)
    kind = checkpoint_kind(state)
    if kind in kinds:
        return state
    if kind == CLASSIFIER:
        raise CheckpointError(f"{path}: is a fine-tuned classifier (mae_ast_classifier), not a pretraining "
                              "checkpoint: score audio with mae-ast-predict / mae_ast.classifier.load_classifier")
    if kind == PRETRAINING:
        raise CheckpointError(f"{path}: is a pretraining checkpoint, not a fine-tuned classifier: fine-tune it "
                              "first (README: Fine-tuning and evaluation), or read features with mae_ast.load")
    missing = [k for k in PRETRAINING_KEYS if k not in state["model"]]
    raise CheckpointError(f"{path}: not a MAE-AST checkpoint: its model lacks {missing}")


def _load(path: str, weights_only: bool, mmap: bool) -> dict:
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap or None)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: cannot be loaded with weights_only=True ({err}). If you trust the file, "
                              "pass weights_only=False.") from err
    except Exception as err:
        raise CheckpointError(f"{path}: not a torch checkpoint ({describe_file(path)}; torch.load said: {err}); "
                              "pass a .pt file written by fairseq-hydra-train") from err
    if not isinstance(state, dict) or "model" not in state or "cfg" not in state:
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a fairseq checkpoint: expected keys 'cfg' and 'model', found {found}")
    return state


def describe_file(path: str) -> str:
    """What a file that torch cannot load looks like, for the error message."""
    with open(path, "rb") as f:
        head = f.read(512)
    size = os.path.getsize(path)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK"):
        return f"a zip archive of {size} bytes whose end is missing: probably truncated by an interrupted copy or save"
    try:
        head.decode("utf-8")
        return "the file is text"
    except UnicodeDecodeError:
        return f"the file starts with bytes {head[:8]!r}, not a zip or pickle"
