"""Loading checkpoints without fairseq's trainer (or without fairseq at all).

    model = mae_ast.load("checkpoint_last.pt", device="cuda")
    out = model.extract_layers([wav1, wav2])   # 16 kHz mono waveforms, or a fbank batch
    out["hidden_states"][-1]                   # (B, time steps, dim), time-aligned
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from types import SimpleNamespace
from typing import Any

import torch

from .models.mae_ast import MAE_AST, MAE_AST_Config

# Keys every MAE-AST state dict has, whatever its depth and options.
REQUIRED_KEYS = ("post_extract_proj.weight", "batch_norm.running_mean", "encoder.layer_norm.weight",
                 "decoder.layer_norm.weight", "encoder_mask_emb", "decoder_mask_emb")
TASK_DEFAULTS = {"feature_type": "fbank", "feature_dim": 128, "mask_type": "random_mask",
                 "deltas": False, "sample_rate": 16000}


class CheckpointError(ValueError):
    """A file that is not a usable MAE-AST checkpoint; the message says why."""


def load_checkpoint(path: str, weights_only: bool = True) -> dict:
    """The checkpoint dict, loaded with ``weights_only`` (safe) unless told otherwise,
    and checked to be a MAE-AST checkpoint."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: cannot be loaded with weights_only=True ({err}). If you trust the file, "
            "pass weights_only=False."
        ) from err
    except Exception as err:
        raise CheckpointError(f"{path}: not a torch checkpoint ({describe_file(path)}; torch.load said: {err}); "
                              "pass a .pt file written by fairseq-hydra-train") from err
    if not isinstance(state, dict) or "model" not in state or "cfg" not in state:
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a fairseq checkpoint: expected keys 'cfg' and 'model', found {found}")
    missing = [k for k in REQUIRED_KEYS if k not in state["model"]]
    if missing:
        raise CheckpointError(f"{path}: not a MAE-AST checkpoint: its model lacks {missing}")
    return state


def describe_file(path: str) -> str:
    """What a file that torch cannot load looks like, for the error message."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "the file is empty"
    try:
        head.decode("utf-8")
        return "the file is text"
    except UnicodeDecodeError:
        return f"the file starts with bytes {head[:8]!r}, not a zip or pickle"


def _as_dict(cfg: Any) -> dict:
    if cfg is None:
        return {}
    if isinstance(cfg, dict):
        return dict(cfg)
    try:  # omegaconf.DictConfig or argparse.Namespace
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:
        pass
    return dict(vars(cfg))


def build_from_state(state: dict) -> MAE_AST:
    cfg = state["cfg"]
    model_cfg = _as_dict(cfg.get("model") if isinstance(cfg, dict) else cfg.model)
    task_cfg = {**TASK_DEFAULTS, **_as_dict(cfg.get("task") if isinstance(cfg, dict) else cfg.task)}
    fields = {f.name for f in dataclasses.fields(MAE_AST_Config)}
    model = MAE_AST(MAE_AST_Config(**{k: v for k, v in model_cfg.items() if k in fields and k != "_name"}),
                    SimpleNamespace(**task_cfg))
    model.load_state_dict(state["model"], strict=True)
    return model


def load(path: str, device: str | torch.device | None = None, weights_only: bool = True) -> MAE_AST:
    """An eval-mode MAE-AST from a fairseq checkpoint (ours or the released ones), with
    encoder layerdrop off so hidden-state indices are fixed."""
    from .hf.folder import is_exported, load_encoder

    # A folder written by mae-ast-export-hf: its decoder-free encoder, from safetensors.
    model = load_encoder(path) if is_exported(path) else build_from_state(load_checkpoint(path, weights_only))
    model.encoder.layerdrop = 0.0
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()
