"""The one definition of how audio becomes model input.

``FeatureSpec`` holds the facts (sample rate, mel bins, deltas, frame window and shift)
and is the one way in: a file (``read_audio``: decode, resample), waveforms
(``batch``: the input contract, fbank, one short-clip policy, a padded batch and its
mask) or a device batch (``compute_batch``). It also answers every question asked about
those facts: feature width, frames for n samples, the shortest usable clip. The dataset,
the fbank cache, the model, ``extract_layers``, the s3prl upstream, HEAR and every tool
build one from the checkpoint's or the task's config (``FeatureSpec.from_task_cfg``), so
a checkpoint trained with deltas gets deltas everywhere.

``as_waveforms`` is the input contract for raw audio handed to the model by users:
mono float in [-1, 1] at the spec's rate; everything else is refused with a message
that says what to do, or (stereo) averaged with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .audio_io import AudioError, decode_audio, named_failure
from .fbank import compute_deltas, fbank
from .resample import resample, resampled_length

logger = logging.getLogger(__name__)

# A float waveform whose peak exceeds this is not on the [-1, 1] scale: int16 range
# (32768) is the usual cause. Loose on purpose: s3prl probes upstreams with
# torch.randn (peaks near 5), and clipped or resampled audio overshoots 1 a little.
MAX_ABS_AMPLITUDE = 32.0
# Axes this short are taken for audio channels, not time (stereo, 5.1, 7.1).
MAX_CHANNELS = 8
# Frames of fbank computed at once (40 s at a 10 ms shift; ~40 MB of FFT intermediates).
FBANK_CHUNK_FRAMES = 4000


def _cfg_get(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key, default) if isinstance(cfg, dict) else getattr(cfg, key, default)
    return default if value is None else value


@dataclass(frozen=True)
class FeatureSpec:
    sample_rate: int = 16000
    num_mel_bins: int = 128
    deltas: bool = False
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0

    @classmethod
    def from_task_cfg(cls, cfg: Any) -> FeatureSpec:
        """The spec a task config (dataclass, DictConfig, dict or namespace) describes.
        ``feature_dim`` is the mel bins (the task's name for it); a missing ``deltas``
        means off, as in every released checkpoint."""
        return cls(sample_rate=int(_cfg_get(cfg, "sample_rate", 16000)),
                   num_mel_bins=int(_cfg_get(cfg, "feature_dim", 128)),
                   deltas=bool(_cfg_get(cfg, "deltas", False)))

    @property
    def width(self) -> int:
        """Columns per frame: the mel bins, tripled when deltas and delta-deltas follow."""
        return self.num_mel_bins * (3 if self.deltas else 1)

    @property
    def window_samples(self) -> int:
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def shift_samples(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    def frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` (Kaldi's snip_edges): 0 below one window."""
        if num_samples < self.window_samples:
            return 0
        return 1 + (num_samples - self.window_samples) // self.shift_samples

    def samples_for_frames(self, num_frames: int) -> int:
        """The fewest samples that give ``num_frames`` frames."""
        return 0 if num_frames <= 0 else self.window_samples + (num_frames - 1) * self.shift_samples

    def describe(self) -> str:
        extra = " + deltas + delta-deltas" if self.deltas else ""
        return f"{self.width} columns ({self.num_mel_bins} mel bins{extra}) at {self.sample_rate} Hz"

    def compute(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(frames, width)`` features of a mono ``(N,)`` waveform at ``sample_rate``,
        scale [-1, 1]; raises ``ValueError`` below one window."""
        frames = self.frames(waveform.shape[-1])
        if frames <= FBANK_CHUNK_FRAMES:
            feat = self._fbank(waveform)
        else:
            # Frames are independent (Kaldi's snip_edges): a chunk of frames at a time keeps
            # the FFT's intermediates (~40x the fbank's size) bounded for any recording length.
            feat = waveform.new_empty((*waveform.shape[:-1], frames, self.num_mel_bins), dtype=torch.float32)
            for start in range(0, frames, FBANK_CHUNK_FRAMES):
                end = min(start + FBANK_CHUNK_FRAMES, frames)
                chunk = waveform[..., start * self.shift_samples: self.samples_for_frames(end)]
                feat[..., start:end, :] = self._fbank(chunk)
        if self.deltas:
            d1 = compute_deltas(feat)
            feat = torch.cat([feat, d1, compute_deltas(d1)], dim=1)
        return feat

    def _fbank(self, waveform: torch.Tensor) -> torch.Tensor:
        return fbank(waveform, num_mel_bins=self.num_mel_bins, sample_rate=self.sample_rate,
                     frame_length_ms=self.frame_length_ms, frame_shift_ms=self.frame_shift_ms)

    def resample(self, wav: torch.Tensor, rate: int) -> torch.Tensor:
        """``wav`` (``(..., N)`` at ``rate`` Hz) at the spec's rate."""
        return resample(wav, rate, self.sample_rate)

    def read(self, path: str, expected_samples: int | None = None, allow_silence: bool = False) -> torch.Tensor:
        """``read_audio`` at the spec's rate."""
        return read_audio(path, self.sample_rate, expected_samples, allow_silence)

    def batch(self, waveforms: Any, min_frames: int, device: torch.device | str | None = None,
              pad_short: bool = False, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms under the input contract (``as_waveforms``) -> ``(B, frames, width)``
        features on ``device``, zero-padded to the longest clip (or cropped from the start
        and padded to ``length`` frames), and the frame padding mask (True = padding).

        The one short-clip policy: a clip with fewer than ``min_frames`` frames (one patch)
        raises ``ValueError`` naming it, or with ``pad_short`` is zero-padded to the
        samples that make ``min_frames`` frames, which then count as its own."""
        feats = []
        for i, wav in enumerate(as_waveforms(waveforms)):
            frames = self.frames(len(wav))
            short = short_of_one_patch(frames, min_frames)
            if short and pad_short:
                wav = F.pad(wav, (0, self.samples_for_frames(min_frames) - len(wav)))
            elif short:
                raise ValueError(f"waveform {i} ({len(wav)} samples at {self.sample_rate} Hz): {short}")
            feat = self.compute(wav.to(device))
            feats.append(feat if length is None else feat[:length])
        valid = torch.tensor([len(f) for f in feats], device=feats[0].device)
        source = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        if length is not None and source.shape[1] < length:
            source = F.pad(source, (0, 0, 0, length - source.shape[1]))
        return source, torch.arange(source.shape[1], device=source.device)[None] >= valid[:, None]

    def frames_at_rate(self, num_samples: int, rate: int) -> int:
        """Frames of a clip of ``num_samples`` at ``rate`` Hz once resampled to ours."""
        return self.frames(resampled_length(num_samples, rate, self.sample_rate))

    def compute_batch(self, wav: torch.Tensor, lengths: list[int], rates: list[int]) -> torch.Tensor:
        """``(B, frames, width)`` features of a zero-padded ``(B, N)`` batch of mono
        waveforms, clip ``i`` holding ``lengths[i]`` samples at ``rates[i]`` Hz, computed
        on ``wav``'s device: resampled by rate group, then one batched fbank. Clip ``i``'s
        first ``frames_at_rate(lengths[i], rates[i])`` frames are its ``compute``
        features (every frame and every resampled sample reads only that clip's samples
        and zeros beyond them, as the per-clip code pads); the rest is padding."""
        new_lengths = [resampled_length(n, r, self.sample_rate) for n, r in zip(lengths, rates)]
        if len(set(rates)) == 1:  # the usual batch: one rate, no regrouping
            at_rate = self.resample(wav[:, : max(lengths)], rates[0])
        else:
            at_rate = wav.new_zeros(len(lengths), max(new_lengths))
            for rate in sorted(set(rates)):
                rows = [i for i, r in enumerate(rates) if r == rate]
                n = max(lengths[i] for i in rows)
                # Row slices, not an index tensor: nothing is copied from the host.
                group = self.resample(torch.stack([wav[i, :n] for i in rows]), rate)
                for k, i in enumerate(rows):
                    at_rate[i, : new_lengths[i]] = group[k, : new_lengths[i]]
        feat = self._fbank(at_rate)
        if self.deltas:  # deltas replicate each clip's own last frame: per clip
            out = feat.new_zeros(*feat.shape[:2], self.width)
            for i, n in enumerate(new_lengths):
                f = self.frames(n)
                d1 = compute_deltas(feat[i, :f])
                out[i, :f] = torch.cat([feat[i, :f], d1, compute_deltas(d1)], dim=1)
            feat = out
        return feat

    def check_width(self, width: int, what: str = "input") -> None:
        """Refuse features of another width: patches would be cut on the wrong grid and
        the padding mask computed for the wrong number of channel blocks."""
        if width != self.width:
            raise ValueError(
                f"{what} has {width} feature columns per frame, but this model expects "
                f"{self.describe()}; compute features with the model's feature_spec.compute(wav), "
                f"or pass waveforms"
            )


def as_waveform(x: Any, index: int = 0) -> torch.Tensor:
    """One user-supplied clip as a mono float32 ``(N,)`` tensor, or a ``ValueError``
    naming the clip and what to do. Stereo (``(C, N)`` or ``(N, C)`` with C <= 8) is
    averaged to mono with a warning, as training does for files."""
    name = f"waveform {index}"
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch tensor or numpy array, got {type(x).__name__}")
    if not (x.is_floating_point()):
        raise ValueError(f"{name}: dtype {x.dtype} is not float; convert to float in [-1, 1] "
                         f"(for int16 audio: x.float() / 32768)")
    if x.dim() == 2:
        x = _to_mono(x, name)
    if x.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D mono waveform, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name}: empty waveform")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or inf samples")
    peak = float(x.abs().max())
    # Whole numbers above 1 are integer samples stored as float, however quiet.
    if peak > MAX_ABS_AMPLITUDE or (peak > 1.0 and bool((x == x.round()).all())):
        raise ValueError(f"{name}: peak amplitude {peak:.4g} is not on the [-1, 1] scale "
                         f"(int16 range? divide by 32768)")
    return x.float()


def _to_mono(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.shape[0] == 1 or x.shape[1] == 1:
        return x.reshape(-1)
    if x.shape[0] <= MAX_CHANNELS < x.shape[1]:
        axis = 0
    elif x.shape[1] <= MAX_CHANNELS < x.shape[0]:
        axis = 1
    else:
        raise ValueError(f"{name}: shape {tuple(x.shape)} is not (channels, samples) or "
                         f"(samples, channels); pass a 1-D mono waveform")
    logger.warning(f"{name}: {x.shape[axis]} channels averaged to mono (shape {tuple(x.shape)})")
    return x.mean(dim=axis)


def as_waveforms(inputs: Any) -> list[torch.Tensor]:
    """A list of clips under the input contract (see ``as_waveform``)."""
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        raise ValueError(
            f"expected a list of 1-D waveforms, got a single {type(inputs).__name__} of shape "
            f"{tuple(inputs.shape)}; wrap clips in a list ([wav]) or pass fbank as (B, frames, columns)"
        )
    if not isinstance(inputs, (list, tuple)) or len(inputs) == 0:
        raise ValueError("expected a non-empty list of 1-D waveforms")
    return [as_waveform(x, i) for i, x in enumerate(inputs)]


def short_of_one_patch(frames: int, min_frames: int) -> str | None:
    """Why ``frames`` feature frames make no token (``min_frames`` is ``PatchGrid.min_frames``,
    one patch in time), or None: the one test and message of every reader of audio, each
    refusing or skipping by its own policy."""
    return f"{frames} frames is shorter than one patch ({min_frames} frames)" if frames < min_frames else None


def read_audio(path: str, sample_rate: int = 16000, expected_samples: int | None = None,
               allow_silence: bool = False) -> torch.Tensor:
    """Mono float32 waveform of ``path`` resampled to ``sample_rate``, scale [-1, 1]
    (``audio_io.decode_audio``, whose ``expected_samples`` is the manifest's length at the
    file's own rate, then the resampler); ``AudioError`` names the file on any failure."""
    wav, rate = decode_audio(path, expected_samples, allow_silence)
    with named_failure(path, f"resampling {rate} Hz to {sample_rate} Hz"):
        return resample(wav, rate, sample_rate)


def clip_features(path: str, spec: FeatureSpec, expected_samples: int | None = None,
                  min_frames: int = 1, allow_silence: bool = False) -> torch.Tensor:
    """What training does with one file: decode (checked against the manifest's length),
    resample, features, at least ``min_frames`` frames (one patch). Raises ``AudioError``
    with the reason; ``mae-ast-validate`` calls this too, so both check the same things."""
    wav = spec.read(path, expected_samples, allow_silence)
    frames = spec.frames(len(wav))
    if frames == 0:
        raise AudioError(path, f"{len(wav)} samples at {spec.sample_rate} Hz is shorter than one "
                               f"{spec.window_samples}-sample fbank window")
    short = short_of_one_patch(frames, min_frames)
    if short:
        raise AudioError(path, f"{short}: {spec.samples_for_frames(min_frames)} samples at {spec.sample_rate} Hz "
                               "make one")
    try:
        return spec.compute(wav)
    except (ValueError, RuntimeError) as err:
        raise AudioError(path, f"features could not be computed ({err})") from err
