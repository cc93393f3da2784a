"""Loading checkpoints without fairseq's trainer (or without fairseq at all).

    model = mae_ast.load("checkpoint_last.pt", device="cuda")
    out = model.extract_layers([wav1, wav2])   # 16 kHz mono waveforms, or a fbank batch
    out["hidden_states"][-1]                   # (B, time steps, dim), time-aligned

``mae_ast.load`` takes a pretraining checkpoint (the whole model, decoder included) or a
fine-tuned classifier (its encoder, for features). Files are read by
``mae_ast.checkpoints``, which names what is wrong with a bad one.
"""

from __future__ import annotations

import torch

from .checkpoints import PRETRAINING, CheckpointError, checkpoint_kind, read_checkpoint  # noqa: F401  (CheckpointError: public name)
from .models.builders import encoder_from_state, pretraining_model
from .models.mae_ast import MAE_AST


def load_checkpoint(path: str, weights_only: bool = True) -> dict:
    """The checkpoint dict of a MAE-AST pretraining or classifier checkpoint (see
    ``mae_ast.checkpoints.read_checkpoint``)."""
    return read_checkpoint(path, weights_only=weights_only)


def build_from_state(state: dict) -> MAE_AST:
    """The pretraining model of a pretraining checkpoint; a classifier's encoder otherwise."""
    return pretraining_model(state) if checkpoint_kind(state) == PRETRAINING else encoder_from_state(state)[0]


def load(path: str, device: str | torch.device | None = None, weights_only: bool = True) -> MAE_AST:
    """An eval-mode MAE-AST from a fairseq checkpoint (ours, the released ones, or a
    fine-tuned classifier's encoder, which has no decoder) or from a folder written by
    mae-ast-export-hf (its decoder-free encoder, from safetensors), with encoder layerdrop
    off so hidden-state indices are fixed."""
    from .hf.folder import is_exported, load_encoder

    model = load_encoder(path) if is_exported(path) else build_from_state(read_checkpoint(path, weights_only))
    return ready(model, device)


def ready(model: MAE_AST, device: str | torch.device | None = None) -> MAE_AST:
    """Eval mode, layerdrop off, on ``device`` (default: CUDA when available)."""
    model.encoder.layerdrop = 0.0
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()
