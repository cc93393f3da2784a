"""Checkpoint to model, one funnel: ``open_checkpoint`` takes any MAE-AST checkpoint
(pretraining, released, fine-tuned classifier, or a mae-ast-export-hf folder), builds the
model its saved config describes and loads its weights strictly; every loader opens
checkpoints here. Beside it, the files-to-features loop of the tools that encode audio files
with a loaded model (``read_clip``, ``encode_clips``). Usage: README, "Features, tools, SUPERB".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .checkpoints import (CLASSIFIER, ENCODER, PRETRAINING, CheckpointError, checkpoint_kind, config_section,
                          read_checkpoint)
from .data.audio_io import AudioError
from .data.features import short_of_one_patch
from .hf import folder
from .models.builders import build_backbone, build_pretraining
from .models.mae_ast import MAE_AST
from .models.mae_ast_classifier import MAE_AST_Classifier, evaluation_settings

KINDS = (PRETRAINING, CLASSIFIER, ENCODER)
# Not kept once the model is built: the weights (in the model), the optimizer's (2x that).
HEAVY = ("model", "last_optimizer_state")


@dataclass
class Checkpoint:
    """A checkpoint, built: its kind, the model (weights loaded strictly), its settings in a
    classifier's ``cfg.model`` layout (``encoder``, ``features``, a classifier's ``class_names``...)
    and the ``.pt``'s dict less ``HEAVY`` (``cfg``, ``task_state``: provenance); ``{}`` for a folder."""

    path: str
    kind: str
    model: torch.nn.Module
    settings: dict
    state: dict

    @property
    def encoder(self) -> MAE_AST:
        """Its MAE_AST: a classifier's encoder, else the model (a pretraining one with its decoder)."""
        return self.model.backbone if self.kind == CLASSIFIER else self.model


def build_model(kind: str, settings: dict, task: dict) -> torch.nn.Module:
    """The random-weight model of ``settings`` (``cfg.model``) and ``task`` (``cfg.task``, pretraining only)."""
    if kind == PRETRAINING:
        return build_pretraining(settings, task)
    encoder = dict(settings["encoder"])
    backbone = build_backbone(encoder, dict(settings["features"]))
    if kind == ENCODER:
        return backbone
    return MAE_AST_Classifier(evaluation_settings(settings), backbone, encoder, len(settings["class_names"]))


def open_checkpoint(path: str, weights_only: bool = True, kinds: tuple[str, ...] = KINDS) -> Checkpoint:
    """The ``Checkpoint`` at ``path`` (a ``.pt`` or an exported folder) of one of ``kinds``;
    ``CheckpointError`` naming the file and what to do otherwise."""
    exported = folder.is_exported(path)
    if exported:
        config, weights = folder.read(path)
        kind, settings, task, state = folder.kind(config), folder.settings(config), {}, {}
        if kind not in kinds:  # a classifier asked of an encoder folder; a .pt asked (show, export)
            hint = "load it with mae_ast.load" if kinds == (CLASSIFIER,) else "pass the .pt it was exported from"
            raise CheckpointError(f"{path}: an exported {kind}, not a {' or '.join(kinds)} checkpoint; {hint}")
    else:
        state = read_checkpoint(path, weights_only, kinds)
        kind, weights = checkpoint_kind(state), state["model"]
        settings, task = config_section(state, "model"), config_section(state, "task")
    model = build_model(kind, settings, task)
    model.load_state_dict(folder.from_folder(weights, model, kind == CLASSIFIER) if exported else weights, strict=True)
    return Checkpoint(path, kind, model.eval(), settings, {k: v for k, v in state.items() if k not in HEAVY})


def load(path: str, device: str | torch.device | None = None, weights_only: bool = True) -> MAE_AST:
    """The ``ready`` encoder of any checkpoint ``open_checkpoint`` takes (a classifier's fine-tuned one)."""
    return ready(open_checkpoint(path, weights_only).encoder, device)


def ready(model: MAE_AST, device: str | torch.device | None = None) -> MAE_AST:
    """Eval mode, layerdrop off (so hidden-state indices are fixed), on ``device`` (default: CUDA when available)."""
    model.encoder.layerdrop = 0.0
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()


def read_clip(model: MAE_AST, path: str, max_samples: int | None = None) -> torch.Tensor:
    """``path``'s waveform (its first ``max_samples``); ``AudioError`` if unreadable or under one patch."""
    wav = model.feature_spec.read(path)[:max_samples]
    short = short_of_one_patch(model.feature_spec.frames(len(wav)), model.grid.min_frames)
    if short:
        raise AudioError(path, short)
    return wav


def encode_clips(model: MAE_AST, items: Iterable[tuple[Any, str]], batch_size: int, output_layer: int | None = None
                 ) -> Iterator[tuple[list, dict | None, list[AudioError]]]:
    """Per ``batch_size`` (key, path) ``items``: the readable clips' keys, their ``extract_layers``
    output (None if none) and the ``AudioError`` of each other clip. ``items`` is read a batch at
    a time, so a generator over a 2 M-clip manifest builds no list of its paths."""
    device = next(model.parameters()).device
    items = iter(items)
    while batch := list(itertools.islice(items, batch_size)):
        keys, wavs, bad = [], [], []
        for key, path in batch:
            try:
                wavs.append(read_clip(model, path).to(device))
                keys.append(key)
            except AudioError as err:
                bad.append(err)
        with torch.inference_mode():
            out = model.extract_layers(wavs, output_layer=output_layer) if wavs else None
        yield keys, out, bad


def resolve_layers(layer: Any, depth: int) -> list[int]:
    """The one rule for naming encoder layers (HEAR, the probe, mae-ast-extract): 1-based, an
    int (negative counts from the end: -1 is the last), a list of ints, or "all"."""
    if isinstance(layer, str):
        if layer != "all":
            raise ValueError(f"layer={layer!r}: use an int (1..{depth}, -1 = last), a list of ints, or 'all'")
        return list(range(1, depth + 1))
    chosen = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not chosen:
        raise ValueError("layer=[]: name at least one layer")
    for k in chosen:
        if isinstance(k, bool) or not isinstance(k, int) or not (1 <= k <= depth or -depth <= k <= -1):
            raise ValueError(f"layer {k!r} is not an encoder layer: this checkpoint has layers 1..{depth} (-1 = last)")
    return [k if k > 0 else depth + 1 + k for k in chosen]
