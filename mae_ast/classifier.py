"""Using a fine-tuned MAE-AST classifier without fairseq's trainer.

    clf = load_classifier("checkpoints/checkpoint_best.pt")
    clf.class_names, clf.multi_label, clf.target_length, clf.feature_spec
    clf.scores([wav1, wav2])                  # (2, C) probabilities, 16 kHz mono waveforms
    clf.scores_windows(long_wav, hop_frames=512)  # (windows, C) over a long recording

The checkpoint is self-contained (encoder config, feature spec and class names are in
its ``cfg.model``) and is loaded with ``weights_only=True``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from .data.augment import pad_or_crop
from .data.features import FeatureSpec, as_waveform, as_waveforms
from .inference import CheckpointError, _as_dict
from .models.mae_ast_classifier import MAE_AST_Classifier, build_backbone

MODEL_DEFAULTS = {"head_dropout": 0.0, "freeze_encoder": False, "pooling": "mean"}


class Classifier:
    """An eval-mode classifier with its input definition and class names."""

    def __init__(self, model: MAE_AST_Classifier, class_names: list[str], multi_label: bool,
                 target_length: int) -> None:
        self.model = model.eval()
        self.class_names = list(class_names)
        self.multi_label = bool(multi_label)
        self.target_length = int(target_length)

    @property
    def feature_spec(self) -> FeatureSpec:
        return self.model.backbone.feature_spec

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def features(self, waveforms: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms -> ``(B, target_length, width)`` features cropped from the start or
        padded (as evaluation in training), and the frame padding mask (True = padding)."""
        feats, valid = [], []
        for i, wav in enumerate(as_waveforms(waveforms)):
            f = self.feature_spec.compute(wav.to(self.device))
            if len(f) < self.model.backbone.grid.min_frames:
                raise ValueError(f"waveform {i}: {len(f)} frames is shorter than one patch "
                                 f"({self.model.backbone.grid.min_frames} frames)")
            f, n = pad_or_crop(f, self.target_length)
            feats.append(f)
            valid.append(n)
        source = torch.stack(feats)
        valid = torch.tensor(valid, device=self.device)
        mask = torch.arange(self.target_length, device=self.device)[None] >= valid[:, None]
        return source, mask

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    @torch.no_grad()
    def scores(self, inputs: list[Any] | torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C)`` probabilities (sigmoid multi-label, softmax single-label) of a list of
        waveforms (mono, [-1, 1], at ``feature_spec.sample_rate``) or of a feature batch
        ``(B, frames, columns)`` (with its optional frame padding mask)."""
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 3:
            source = inputs.to(self.device)
            padding_mask = None if padding_mask is None else padding_mask.to(self.device)
        else:
            source, padding_mask = self.features(inputs)
        return self.probabilities(self.model(source, padding_mask)).cpu()

    @torch.no_grad()
    def scores_windows(self, waveform: Any, hop_frames: int | None = None) -> torch.Tensor:
        """``(windows, C)`` probabilities of ``target_length``-frame windows every
        ``hop_frames`` frames (default: ``target_length``, no overlap) over one long
        waveform; the last window is aligned to the end so every frame is covered. A clip
        no longer than ``target_length`` gives one (padded) window."""
        hop = hop_frames or self.target_length
        if hop < 1:
            raise ValueError(f"hop_frames must be >= 1, got {hop}")
        feat = self.feature_spec.compute(as_waveform(waveform).to(self.device))
        if len(feat) <= self.target_length:
            source, valid = pad_or_crop(feat, self.target_length)
            mask = torch.arange(self.target_length, device=self.device)[None] >= valid
            return self.probabilities(self.model(source[None], mask)).cpu()
        last = len(feat) - self.target_length
        starts = sorted(set(range(0, last + 1, hop)) | {last})
        windows = torch.stack([feat[s : s + self.target_length] for s in starts])
        return torch.cat([self.probabilities(self.model(chunk)).cpu() for chunk in windows.split(32)])


def classifier_from_state(state: dict) -> Classifier:
    cfg = state["cfg"]
    model_cfg = _as_dict(cfg.get("model") if isinstance(cfg, dict) else cfg.model)
    if model_cfg.get("_name") != "mae_ast_classifier" or not model_cfg.get("encoder"):
        raise CheckpointError(f"not a fine-tuned MAE-AST classifier (model {model_cfg.get('_name')!r}); "
                              "for pretraining checkpoints use mae_ast.load")
    encoder, names = dict(model_cfg["encoder"]), list(model_cfg["class_names"])
    backbone = build_backbone(encoder, dict(model_cfg["features"]))
    # Lr scales are a training matter: evaluation builds the plain module.
    settings = {**MODEL_DEFAULTS, **{k: model_cfg[k] for k in MODEL_DEFAULTS if model_cfg.get(k) is not None},
                "layer_decay": 1.0, "head_lr_scale": 1.0}
    model = MAE_AST_Classifier(SimpleNamespace(**settings), backbone, encoder, len(names))
    model.load_state_dict(state["model"], strict=True)
    return Classifier(model, names, model_cfg["multi_label"], model_cfg["target_length"])


def load_classifier(path: str, device: str | torch.device | None = None) -> Classifier:
    """A fine-tuned classifier checkpoint, loaded with ``weights_only=True`` (fairseq not
    needed), in eval mode on ``device`` (default: CUDA when available)."""
    import os

    from .hf.folder import is_exported, load_classifier as load_exported

    if is_exported(path):  # a folder written by mae-ast-export-hf (safetensors)
        clf = load_exported(path)
        clf.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return clf
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot be loaded with weights_only=True ({err})") from err
    if not isinstance(state, dict) or "model" not in state or "cfg" not in state:
        raise CheckpointError(f"{path}: not a fairseq checkpoint (expected keys 'cfg' and 'model')")
    try:
        clf = classifier_from_state(state)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    clf.model.to(device)
    return clf
