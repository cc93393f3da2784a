"""The one definition of how audio becomes model input: ``FeatureSpec`` (sample rate, mel
bins, deltas, window and shift), which every reader builds from the checkpoint's or task's
config (so deltas go wherever they were trained), from a file (``read``), user waveforms
(``batch``) or a device batch (``compute_batch``). ``as_waveforms`` is the input contract
for users' raw audio: mono float in [-1, 1].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .audio_io import AudioError, decode_audio, named_failure
from .fbank import check_clip, fbank, short_of_one_patch, with_deltas
from .resample import resample, resampled_length

logger = logging.getLogger(__name__)

# Axes this short are taken for audio channels, not time (stereo, 5.1, 7.1).
MAX_CHANNELS = 8
# Frames of fbank computed at once (40 s at a 10 ms shift; ~40 MB of FFT intermediates).
FBANK_CHUNK_FRAMES = 4000


@dataclass(frozen=True)
class FeatureSpec:
    sample_rate: int = 16000
    num_mel_bins: int = 128
    deltas: bool = False
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    # The task config's (and checkpoints' ``cfg.model.features``) name of each field it sets.
    TASK_FIELDS: ClassVar[dict[str, str]] = {"sample_rate": "sample_rate", "feature_dim": "num_mel_bins",
                                             "deltas": "deltas"}

    @classmethod
    def from_task_cfg(cls, cfg: Any) -> FeatureSpec:
        """The spec a task config (dataclass, DictConfig, dict or namespace) describes, a field
        missing or None at its default (a missing ``deltas`` off: released checkpoints)."""
        types, fields = {"sample_rate": int, "num_mel_bins": int, "deltas": bool}, {}
        for key, attr in cls.TASK_FIELDS.items():
            value = cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)
            fields[attr] = getattr(cls, attr) if value is None else types[attr](value)
        return cls(**fields)

    def task_fields(self) -> dict:
        """This spec under the task config's names: what a checkpoint records as its features."""
        return {key: getattr(self, attr) for key, attr in self.TASK_FIELDS.items()}

    @property
    def width(self) -> int:
        """Columns per frame: the mel bins, tripled with deltas."""
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

    def seconds(self, num_frames: float) -> float:
        """Frames as seconds at the frame shift (the one conversion: 1024 frames are 10.24 s)."""
        return num_frames * self.frame_shift_ms / 1000.0

    def frames_in(self, seconds: float) -> int:
        """Whole frames nearest to ``seconds``, at least one."""
        return max(1, round(seconds * 1000.0 / self.frame_shift_ms))

    def samples_for_frames(self, num_frames: int) -> int:
        return 0 if num_frames <= 0 else self.window_samples + (num_frames - 1) * self.shift_samples

    def describe(self) -> str:
        extra = " + deltas + delta-deltas" if self.deltas else ""
        return f"{self.width} columns ({self.num_mel_bins} mel bins{extra}) at {self.sample_rate} Hz"

    def compute(self, waveform: Any) -> torch.Tensor:
        """``(frames, width)`` features of one clip at ``sample_rate``: a tensor or array under
        the input contract (``as_waveform``: mono float in [-1, 1]); ``ValueError`` otherwise,
        and below one window."""
        return self.features(as_waveform(waveform))

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """``compute`` of a ``(N,)`` waveform already under the contract (decoded or checked):
        the readers' path, without a second pass over the samples."""
        frames = self.frames(waveform.shape[-1])
        if frames <= FBANK_CHUNK_FRAMES:
            feat = self._fbank(waveform)
        else:
            # Frames are independent (snip_edges): chunks bound the FFT's intermediates (~40x the fbank)
            feat = waveform.new_empty((*waveform.shape[:-1], frames, self.num_mel_bins), dtype=torch.float32)
            for start in range(0, frames, FBANK_CHUNK_FRAMES):
                end = min(start + FBANK_CHUNK_FRAMES, frames)
                chunk = waveform[..., start * self.shift_samples: self.samples_for_frames(end)]
                feat[..., start:end, :] = self._fbank(chunk)
        return with_deltas(feat) if self.deltas else feat

    def _fbank(self, waveform: torch.Tensor) -> torch.Tensor:
        return fbank(waveform, num_mel_bins=self.num_mel_bins, sample_rate=self.sample_rate,
                     frame_length_ms=self.frame_length_ms, frame_shift_ms=self.frame_shift_ms)

    def read(self, path: str, expected_samples: int | None = None, allow_silence: bool = False) -> torch.Tensor:
        return read_audio(path, self.sample_rate, expected_samples, allow_silence)

    def batch(self, waveforms: Any, min_frames: int, device: torch.device | str | None = None,
              pad_short: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms under the input contract -> ``(B, frames, width)`` features on ``device``,
        zero-padded to the longest clip, and the padding mask (True = padding). A clip under
        ``min_frames`` (one patch) raises ``ValueError``, or with ``pad_short`` is zero-padded
        to ``min_frames`` valid frames."""
        feats = []
        for i, wav in enumerate(as_waveforms(waveforms)):
            short = short_of_one_patch(self.frames(len(wav)), min_frames)
            if short and pad_short:
                wav = F.pad(wav, (0, self.samples_for_frames(min_frames) - len(wav)))
            elif short:
                raise ValueError(f"waveform {i} ({len(wav)} samples at {self.sample_rate} Hz): {short}")
            feats.append(self.features(wav.to(device)))
        valid = torch.tensor([len(f) for f in feats], device=feats[0].device)
        source = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        return source, torch.arange(source.shape[1], device=source.device)[None] >= valid[:, None]

    def frames_at_rate(self, num_samples: int, rate: int) -> int:
        """Frames of a clip of ``num_samples`` at ``rate`` Hz once resampled to ours."""
        return self.frames(resampled_length(num_samples, rate, self.sample_rate))

    def unusable(self, num_samples: int, rate: int, min_frames: int) -> str | None:
        """Why a clip of ``num_samples`` at ``rate`` Hz makes no token, or None."""
        frames = self.frames_at_rate(num_samples, rate)
        if frames == 0:
            return (f"{num_samples} samples at {rate} Hz is shorter than one {self.window_samples}-sample "
                    f"fbank window at {self.sample_rate} Hz")
        short = short_of_one_patch(frames, min_frames)
        return short and f"{short}: {self.samples_for_frames(min_frames)} samples at {self.sample_rate} Hz make one"

    def compute_batch(self, wav: torch.Tensor, lengths: list[int], rates: list[int]) -> torch.Tensor:
        """``(B, frames, width)`` features of a zero-padded ``(B, N)`` batch, clip ``i`` holding
        ``lengths[i]`` samples at ``rates[i]`` Hz, on ``wav``'s device. Clip ``i``'s first
        ``frames_at_rate(lengths[i], rates[i])`` frames are its ``compute`` features (each
        reads only that clip's samples and zeros beyond); the rest is padding."""
        new_lengths = [resampled_length(n, r, self.sample_rate) for n, r in zip(lengths, rates)]
        if len(set(rates)) == 1:  # the usual batch: one rate, no regrouping
            at_rate = resample(wav[:, : max(lengths)], rates[0], self.sample_rate)
        else:
            at_rate = wav.new_zeros(len(lengths), max(new_lengths))
            for rate in sorted(set(rates)):
                rows = [i for i, r in enumerate(rates) if r == rate]
                n = max(lengths[i] for i in rows)
                # Row slices, not an index tensor: nothing is copied from the host.
                group = resample(torch.stack([wav[i, :n] for i in rows]), rate, self.sample_rate)
                for k, i in enumerate(rows):
                    at_rate[i, : new_lengths[i]] = group[k, : new_lengths[i]]
        feat = self._fbank(at_rate)
        if self.deltas:  # deltas replicate each clip's own last frame: per clip
            out = feat.new_zeros(*feat.shape[:2], self.width)
            for i, n in enumerate(new_lengths):
                out[i, : self.frames(n)] = with_deltas(feat[i, : self.frames(n)])
            feat = out
        return feat

    def check_width(self, width: int, what: str = "input") -> None:
        """Refuse features of another width (patches would be cut on the wrong grid)."""
        if width != self.width:
            raise ValueError(f"{what} has {width} feature columns per frame, but this model expects "
                             f"{self.describe()}; compute features with the model's feature_spec.compute(wav), "
                             f"or pass waveforms")


def as_waveform(x: Any, index: int = 0) -> torch.Tensor:
    """One user-supplied clip as a mono float32 ``(N,)`` tensor, or a ``ValueError`` saying
    what to do. Stereo (``(C, N)`` or ``(N, C)``, C <= 8) is averaged with a warning."""
    name = f"waveform {index}"
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch tensor or numpy array, got {type(x).__name__}")
    if x.dim() == 2 and x.is_floating_point():
        x = _to_mono(x, name)
    return check_clip(x, name)


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


def read_audio(path: str, sample_rate: int = 16000, expected_samples: int | None = None,
               allow_silence: bool = False) -> torch.Tensor:
    """``decode_audio`` (see there), resampled to ``sample_rate``."""
    wav, rate = decode_audio(path, expected_samples, allow_silence)
    with named_failure(path, f"resampling {rate} Hz to {sample_rate} Hz"):
        return resample(wav, rate, sample_rate)


def clip_features(path: str, spec: FeatureSpec, expected_samples: int | None = None,
                  min_frames: int = 1, allow_silence: bool = False) -> torch.Tensor:
    """What training does with one file: read, check, features; ``AudioError`` names the
    reason. ``mae-ast-validate`` calls this too, so both check the same things."""
    wav = spec.read(path, expected_samples, allow_silence)
    reason = spec.unusable(len(wav), spec.sample_rate, min_frames)
    if reason:
        raise AudioError(path, reason)
    with named_failure(path, "computing features"):
        return spec.features(wav)
