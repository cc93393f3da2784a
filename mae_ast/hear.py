"""The HEAR 2021 API (hear-eval-kit, hearvalidator) for every MAE-AST checkpoint.

    model = mae_ast.hear.load_model("checkpoint.pt")                  # pretraining or fine-tuned
    emb, ts = mae_ast.hear.get_timestamp_embeddings(audio, model)     # audio: (n_sounds, n_samples)
    scene = mae_ast.hear.get_scene_embeddings(audio, model)           # (n_sounds, dim)

Timestamp embeddings, construction: shifted passes. A token's embedding (the chosen
layer, averaged over the channel blocks of its time step, as ``extract_layers``) is
placed at the centre of the samples its patch reads. One pass over the clip gives one
embedding every ``ast_kernel_stride_time`` frames (160 ms for 16x16 patches, 20 ms for
2x128 frames). For a finer hop, the encoder runs ``P`` passes whose patch grids start
``hop`` apart (``P * hop`` = the stride), and the passes interleave into one regular
timeline. Kaldi frames are computed independently of each other, so pass ``j``'s patches
read exactly the frames that the clip shifted by ``j * hop`` would give: every
embedding is a real token of the model, none interpolated. (With deltas, the passes
read the whole clip's deltas, which differ from a cut clip's in its first two frames.) The hop must divide the
stride into whole 10 ms frames: 10, 20, 40, 80 or 160 ms for 16-frame patches.

To put centres at the very start and the very end of the clip, the feature image is
padded on both sides with the model's input mean (the value its BatchNorm maps to 0),
so edge tokens read real frames plus a neutral value: the first centre is at 7.5 ms
(less than one hop), the last within one hop of the end. A clip shorter than one fbank
window is zero-padded to one window (25 ms), one shorter than a patch is padded the
same way, so every clip gets embeddings.

Scene embeddings: the mean over time of the chosen layer over the clip as it is (one
pass, no edge padding unless the clip is shorter than one patch): what the fine-tuned
classifier pools and what SUPERB's utterance tasks mean-pool in the s3prl upstream.

Long clips run in windows of ``window_s`` seconds (default: the length the checkpoint
was trained on: its ``task.max_sample_size`` crop, or a classifier's
``target_length``), each window whole steps of the same grid, so the timeline is
unchanged and attention cost stays bounded.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from .checkpoints import CLASSIFIER
from .loading import open_checkpoint, ready
from .models.mae_ast import MAE_AST

# hear-eval-kit's music transcription tasks score onsets with a 50 ms tolerance.
MAX_HOP_MS = 50.0
# config/pretrain/mae_ast.yaml's task.max_sample_size: the crop pretraining saw.
DEFAULT_MAX_SAMPLES = 250000


class HearModel(nn.Module):
    """An encoder with the HEAR attributes and the options chosen at ``load_model``."""

    def __init__(self, encoder: MAE_AST, layer: Any = -1, hop_ms: float | None = None,
                 window_s: float | None = None, window_frames: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        spec, grid = encoder.feature_spec, encoder.grid
        self.sample_rate = int(spec.sample_rate)
        dim = int(encoder.cfg.encoder_embed_dim)
        self.scene_embedding_size = dim
        self.timestamp_embedding_size = dim
        self.layers = resolve_layers(layer, len(encoder.encoder.layers))
        self.hop_frames = hop_in_frames(hop_ms, grid.stride_time, spec.frame_shift_ms)
        self.passes = grid.stride_time // self.hop_frames
        self.hop_ms = self.hop_frames * spec.frame_shift_ms
        if window_s is not None:
            window_frames = 0 if window_s <= 0 else max(1, round(window_s * 1000 / spec.frame_shift_ms))
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
        fbank window is zero-padded to one window."""
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
        """Centres (ms) of the embeddings of a clip of ``num_samples``: every hop from the
        first centre while inside the clip (at least one)."""
        shift = self.encoder.feature_spec.shift_samples
        hop = self.hop_frames * shift
        count = max(1, int((num_samples - self.first_centre) // hop) + 1)
        centres = self.first_centre + hop * torch.arange(count, dtype=torch.float64)
        return (centres * 1000.0 / self.sample_rate).float()

    @torch.no_grad()
    def timestamp_embeddings(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(audio)
        B, frames, width = feats.shape
        times = self.timestamps(audio.shape[1])
        count = len(times)
        kt, d = self.encoder.grid.kernel_time, self.hop_frames
        # Embedding k: the token whose patch starts at frame k * d - left_pad.
        right = max(0, (count - 1) * d - self.left_pad + kt - frames)
        image = feats.new_full((B, self.left_pad + frames + right, width), self.pad_value())
        image[:, self.left_pad : self.left_pad + frames] = feats
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
            pad = feats.new_full((feats.shape[0], grid.kernel_time - feats.shape[1], feats.shape[2]), self.pad_value())
            feats = torch.cat([feats, pad], dim=1)
        return self.run(feats, grid.time_steps(feats.shape[1])).mean(dim=1).float()


def resolve_layers(layer: Any, depth: int) -> list[int]:
    """1-based encoder layers to average: an int (negative counts from the end: -1 is the
    last), a list of ints, or "all"."""
    if isinstance(layer, str):
        if layer != "all":
            raise ValueError(f"layer={layer!r}: use an int (1..{depth}, -1 = last), a list of ints, or 'all'")
        return list(range(1, depth + 1))
    chosen = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not chosen:
        raise ValueError("layer=[]: name at least one layer")
    out = []
    for k in chosen:
        if isinstance(k, bool) or not isinstance(k, int) or not (1 <= k <= depth or -depth <= k <= -1):
            raise ValueError(f"layer {k!r} is not an encoder layer: this checkpoint has layers 1..{depth} (-1 = last)")
        out.append(k if k > 0 else depth + 1 + k)
    return out


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


def load_encoder(path: str, device: str | torch.device | None = None) -> tuple[MAE_AST, int]:
    """The encoder of a pretraining or fine-tuned checkpoint (file or exported folder), and
    the frames it was trained on (a classifier's target_length, else the pretraining crop)."""
    ck = open_checkpoint(path)
    model = ready(ck.encoder, device)
    if ck.kind == CLASSIFIER:
        return model, int(ck.settings["target_length"])
    max_samples = getattr(model.task_cfg, "max_sample_size", None) or DEFAULT_MAX_SAMPLES
    return model, model.feature_spec.frames(int(max_samples))


def load_model(model_file_path: str = "", **options: Any) -> HearModel:
    """HEAR's ``load_model``: a MAE-AST checkpoint (pretraining, released, or fine-tuned
    classifier: its fine-tuned encoder). Options: ``layer`` (default -1, the last; a list
    of layers or "all" averages them), ``hop_ms`` (default: the largest exact hop <= 50
    ms: 40 ms for 16-frame patches, 20 ms for frame models), ``window_s`` (default: the
    checkpoint's training length; 0 = whole clips), ``device``."""
    if not model_file_path:
        raise ValueError("load_model needs a MAE-AST checkpoint path")
    unknown = set(options) - {"layer", "hop_ms", "window_s", "device"}
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}: use layer, hop_ms, window_s, device")
    encoder, trained_frames = load_encoder(model_file_path, options.get("device"))
    return HearModel(encoder, layer=options.get("layer", -1), hop_ms=options.get("hop_ms"),
                     window_s=options.get("window_s"), window_frames=trained_frames)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_sounds, n_samples)`` audio in [-1, 1] at ``model.sample_rate`` ->
    ``((n_sounds, n_times, dim)`` float32 embeddings, ``(n_sounds, n_times)`` centres in ms)."""
    return model.timestamp_embeddings(audio)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``(n_sounds, n_samples)`` audio -> ``(n_sounds, dim)`` float32: the mean over time."""
    return model.scene_embeddings(audio)
