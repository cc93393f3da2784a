"""Scoring audio with a fine-tuned MAE-AST classifier (a ``.pt`` or an exported folder,
opened by ``mae_ast.loading``) without fairseq's trainer; the fairseq model is
``models/mae_ast_classifier.py``. Usage: README, "Fine-tuning and evaluation".
"""

from __future__ import annotations

from typing import Any

import torch

from .data.features import FeatureSpec, as_waveform, short_of_one_patch
from .data.mae_ast_dataset import crop_batch
from .checkpoints import CLASSIFIER
from .loading import Checkpoint, open_checkpoint
from .models.class_scores import probabilities

# Windows per forward pass over a long recording: memory stays bounded whatever its length.
WINDOW_BATCH = 32


def window_starts(num_frames: int, target_length: int, hop: int) -> list[int]:
    """First frame of each ``target_length``-frame window: every ``hop`` frames (1..target_length,
    else frames between windows go unseen), the last aligned to the end; ``[0]`` for a short clip."""
    if not 1 <= hop <= target_length:
        raise ValueError(f"hop of {hop} frames: must be 1..{target_length} (the window length), "
                         "else frames between windows are never scored")
    if num_frames <= target_length:
        return [0]
    last = num_frames - target_length
    return [*range(0, last, hop), last]


def aggregate(window_scores: torch.Tensor, how: str) -> torch.Tensor:
    """A file's ``(C,)`` scores from its ``(windows, C)`` ones: ``mean`` (a class posterior,
    single-label) or ``max`` (an event in any window is in the file, multi-label)."""
    if how == "max":
        return window_scores.max(dim=0).values
    if how == "mean":
        return window_scores.mean(dim=0)
    raise ValueError(f"aggregate must be 'mean' or 'max', got {how!r}")


class Classifier:
    """An eval-mode classifier with its input definition and class names; ``checkpoint``'s
    ``state`` holds the provenance record."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval()
        settings = checkpoint.settings
        self.class_names = list(settings["class_names"])
        self.multi_label = bool(settings["multi_label"])
        self.target_length = int(settings["target_length"])

    @property
    def feature_spec(self) -> FeatureSpec:
        return self.model.backbone.feature_spec

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def default_hop(self) -> int:
        """Frames between window starts: half a window."""
        return max(1, self.target_length // 2)

    @property
    def aggregation(self) -> str:
        """The default of ``aggregate``: max multi-label, else mean."""
        return "max" if self.multi_label else "mean"

    @property
    def input_seconds(self) -> float:
        """The model's ``target_length`` frames in seconds: the longest hop that scores every frame."""
        return self.feature_spec.seconds(self.target_length)

    def hop_in_frames(self, seconds: float | None) -> int:
        """``seconds`` between window starts in whole frames (``None``: ``default_hop``);
        ``ValueError`` for a hop longer than one window."""
        if seconds is None:
            return self.default_hop
        hop = self.feature_spec.frames_in(seconds)
        if hop > self.target_length:
            raise ValueError(f"a hop of {seconds:g} s is longer than the model's {self.input_seconds:g} s input "
                             f"({self.target_length} frames): the frames between windows would never be "
                             f"scored; use a hop of at most {self.input_seconds:g} s")
        return hop

    def _probabilities(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The model's probabilities of a feature batch (sigmoid multi-label, else softmax), on the CPU."""
        return probabilities(self.model(source, padding_mask), self.multi_label).cpu()

    def aggregate(self, window_scores: torch.Tensor, how: str | None = None) -> torch.Tensor:
        return aggregate(window_scores, how or self.aggregation)

    @torch.no_grad()
    def scores(self, inputs: list[Any] | torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C)`` probabilities (sigmoid multi-label, softmax single-label) of a list of waveforms
        (mono, [-1, 1], at ``feature_spec.sample_rate``; cropped from the start or padded to
        ``target_length``, as validation in training) or of a feature batch ``(B, frames, columns)``
        with its padding mask."""
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 3:
            source = inputs.to(self.device)
            padding_mask = None if padding_mask is None else padding_mask.to(self.device)
        else:
            source, pad = self.feature_spec.batch(inputs, self.model.backbone.grid.min_frames, self.device)
            frames = (~pad).sum(dim=1).tolist()  # validation's crop: from the start, padded to target_length
            source, padding_mask = crop_batch(source, frames, [0] * len(frames), self.target_length)
        return self._probabilities(source, padding_mask)

    @torch.no_grad()
    def scores_windows(self, waveform: Any, hop_frames: int | None = None,
                       batch_size: int = WINDOW_BATCH) -> torch.Tensor:
        """``(windows, C)`` probabilities of one waveform's ``window_starts`` windows every
        ``hop_frames`` (default ``default_hop``), at most ``batch_size`` per forward pass."""
        return self.scores_feature_windows(self.clip_features(waveform), hop_frames, batch_size)

    def clip_features(self, waveform: Any) -> torch.Tensor:
        """``(frames, width)`` features of one whole waveform (mono, [-1, 1], at
        ``feature_spec.sample_rate``; ``ValueError`` otherwise), on the model's device."""
        return self.feature_spec.features(as_waveform(waveform).to(self.device))

    @torch.no_grad()
    def scores_feature_windows(self, feat: torch.Tensor, hop_frames: int | None = None,
                               batch_size: int = WINDOW_BATCH) -> torch.Tensor:
        """``scores_windows`` of one clip's ``(frames, width)`` features."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        feat = feat.to(self.device)
        short = short_of_one_patch(len(feat), self.model.backbone.grid.min_frames)
        if short:
            raise ValueError(short)
        starts = window_starts(len(feat), self.target_length, hop_frames or self.default_hop)
        if len(feat) <= self.target_length:  # one window, padded as validation's batches are
            return self._probabilities(*crop_batch([feat], [len(feat)], [0], self.target_length))
        out = []
        for i in range(0, len(starts), batch_size):  # only this batch's windows are ever copied
            windows = torch.stack([feat[s : s + self.target_length] for s in starts[i : i + batch_size]])
            out.append(self._probabilities(windows))
        return torch.cat(out)


def load_classifier(path: str, device: str | torch.device | None = None) -> Classifier:
    """A fine-tuned classifier (a ``.pt``, loaded ``weights_only``, or an exported folder) in
    eval mode on ``device`` (default: CUDA when available); fairseq is not needed."""
    clf = Classifier(open_checkpoint(path, kinds=(CLASSIFIER,)))
    clf.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return clf
