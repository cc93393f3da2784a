"""The HEAR 2021 API (hear-eval-kit, hearvalidator) for every MAE-AST checkpoint. How timestamp
embeddings are built (shifted passes of the patch grid, every one a real token; edge padding with
the input mean) and the defaults: README, "HEAR and Hugging Face". Not said there: with deltas,
the passes read the whole clip's deltas, which differ from a cut clip's in its first two frames.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from .checkpoints import CLASSIFIER
from .loading import open_checkpoint, ready, resolve_layers
from .models.mae_ast import MAE_AST

# hear-eval-kit's music transcription tasks score onsets with a 50 ms tolerance.
MAX_HOP_MS = 50.0
# config/pretrain/mae_ast.yaml's task.max_sample_size, read as samples for the window length
# (15.6 s): a bound, not what pretraining saw (batches are cropped to their shortest clip,
# 10 s on AudioSet; the original's cap, in frames, never binds).
DEFAULT_MAX_SAMPLES = 250000


class HearModel(nn.Module):
    """An encoder with the HEAR attributes and the options chosen at ``load_model``."""

    def __init__(self, encoder: MAE_AST, layer: Any = -1, hop_ms: float | None = None,
                 window_s: float | None = None, window_frames: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        spec, grid = encoder.feature_spec, encoder.grid
        self.sample_rate = int(spec.sample_rate)
        self.scene_embedding_size = self.timestamp_embedding_size = int(encoder.cfg.encoder_embed_dim)
        self.layers = resolve_layers(layer, len(encoder.encoder.layers))
        self.hop_frames = hop_in_frames(hop_ms, grid.stride_time, spec.frame_shift_ms)
        self.passes = grid.stride_time // self.hop_frames
        self.hop_ms = self.hop_frames * spec.frame_shift_ms
        if window_s is not None:
            window_frames = 0 if window_s <= 0 else spec.frames_in(window_s)
        # Whole time steps per window (at least one patch); 0 = the whole clip at once.
        self.window_steps = 0 if not window_frames else max(1, grid.time_steps(max(window_frames, grid.kernel_time)))
        # Frames of edge padding before the clip: the first token's centre lands in [0, one frame).
        half_span = ((grid.kernel_time - 1) * spec.shift_samples + spec.window_samples) / 2
        self.left_pad = int(half_span // spec.shift_samples)
        self.first_centre = half_span - self.left_pad * spec.shift_samples  # samples

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def pad_value(self) -> float:
        """The raw feature value the encoder's BatchNorm maps to 0 (its running mean)."""
        return float(self.encoder.batch_norm.running_mean.item())

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """``(n_sounds, n_samples)`` -> ``(n_sounds, frames, width)``; a clip shorter than one
        fbank window (25 ms) is zero-padded to one window, so every clip gets embeddings."""
        if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
            shape = tuple(audio.shape) if hasattr(audio, "shape") else type(audio).__name__
            raise ValueError(f"audio must be a (n_sounds, n_samples) tensor, got {shape}")
        return self.encoder.feature_spec.batch(list(audio), 1, self.device, pad_short=True)[0]

    def layer_states(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, frames, width)`` -> ``(B, steps, dim)``: the chosen layers' mean, time-aligned."""
        states = self.encoder.extract_layers(image, output_layer=max(self.layers))["hidden_states"]
        return torch.stack([states[k - 1] for k in self.layers]).mean(dim=0)

    def run(self, image: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` time steps of the grid that starts at frame 0 of ``image``, window by window."""
        st, kt = self.encoder.grid.stride_time, self.encoder.grid.kernel_time
        per = self.window_steps or steps
        out = []
        for first in range(0, steps, per):
            n = min(per, steps - first)
            out.append(self.layer_states(image[:, first * st : first * st + (n - 1) * st + kt]))
        return torch.cat(out, dim=1)

    def timestamps(self, num_samples: int) -> torch.Tensor:
        """Centres (ms) of a clip's embeddings: every hop from the first centre while inside it (at least one)."""
        shift = self.encoder.feature_spec.shift_samples
        hop = self.hop_frames * shift
        count = max(1, int((num_samples - self.first_centre) // hop) + 1)
        centres = self.first_centre + hop * torch.arange(count, dtype=torch.float64)
        return (centres * 1000.0 / self.sample_rate).float()

    @torch.no_grad()
    def timestamp_embeddings(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(audio)
        B, frames, _ = feats.shape
        times = self.timestamps(audio.shape[1])
        count = len(times)
        kt, d = self.encoder.grid.kernel_time, self.hop_frames
        # Embedding k: the token whose patch starts at frame k * d - left_pad.
        right = max(0, (count - 1) * d - self.left_pad + kt - frames)
        image = nn.functional.pad(feats, (0, 0, self.left_pad, right), value=self.pad_value())
        out = feats.new_zeros(B, count, self.timestamp_embedding_size)
        for j in range(min(self.passes, count)):
            steps = len(range(j, count, self.passes))
            out[:, j :: self.passes] = self.run(image[:, j * d :], steps)
        return out.float(), times.to(out.device).expand(B, -1).contiguous()

    @torch.no_grad()
    def scene_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        feats = self.features(audio)
        grid = self.encoder.grid
        if feats.shape[1] < grid.kernel_time:
            feats = nn.functional.pad(feats, (0, 0, 0, grid.kernel_time - feats.shape[1]), value=self.pad_value())
        return self.run(feats, grid.time_steps(feats.shape[1])).mean(dim=1).float()


def hop_in_frames(hop_ms: float | None, stride_frames: int, frame_ms: float) -> int:
    """Frames between timestamp embeddings: ``hop_ms`` if it divides the patch stride into
    whole frames, by default the largest such hop <= 50 ms."""
    exact = [d for d in range(1, stride_frames + 1) if stride_frames % d == 0]
    if hop_ms is None:
        return max(d for d in exact if d * frame_ms <= MAX_HOP_MS)
    d = hop_ms / frame_ms
    if not math.isclose(d, round(d)) or round(d) not in exact:
        allowed = ", ".join(f"{x * frame_ms:g}" for x in exact)
        raise ValueError(f"hop_ms={hop_ms}: exact hops for a {stride_frames}-frame patch stride are {allowed} ms")
    return round(d)


def load_model(model_file_path: str = "", **options: Any) -> HearModel:
    """HEAR's ``load_model`` of any MAE-AST checkpoint (a classifier's: its fine-tuned encoder); the
    options ``layer``, ``hop_ms``, ``window_s``, ``device`` and their defaults: README, "HEAR"."""
    if not model_file_path:
        raise ValueError("load_model needs a MAE-AST checkpoint path")
    unknown = set(options) - {"layer", "hop_ms", "window_s", "device"}
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}: use layer, hop_ms, window_s, device")
    ck = open_checkpoint(model_file_path)
    encoder = ready(ck.encoder, options.get("device"))
    if ck.kind == CLASSIFIER:
        trained_frames = int(ck.settings["target_length"])
    else:  # a bound (see DEFAULT_MAX_SAMPLES): pretraining's clip lengths are not recorded
        max_samples = getattr(encoder.task_cfg, "max_sample_size", None) or DEFAULT_MAX_SAMPLES
        trained_frames = encoder.feature_spec.frames(int(max_samples))
    return HearModel(encoder, layer=options.get("layer", -1), hop_ms=options.get("hop_ms"),
                     window_s=options.get("window_s"), window_frames=trained_frames)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_sounds, n_samples)`` audio in [-1, 1] at ``model.sample_rate`` ->
    ``((n_sounds, n_times, dim)`` float32 embeddings, ``(n_sounds, n_times)`` centres in ms)."""
    return model.timestamp_embeddings(audio)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``(n_sounds, n_samples)`` audio -> ``(n_sounds, dim)`` float32, the mean of the clip's own tokens."""
    return model.scene_embeddings(audio)
