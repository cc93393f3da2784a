"""Kaldi-compatible log-mel filterbank and deltas in plain torch, as the original computed them.

The original called ``torchaudio.compliance.kaldi.fbank(wav, sample_frequency=16000,
use_energy=False, num_mel_bins=128)`` with every other argument at its default; this
reproduces them without torchaudio (no release matches current torch) or
kaldi-native-fbank (refuses 128 bins at 16 kHz), batched on any device. Defaults: 25 ms
povey window, 10 ms shift, ``snip_edges`` framing, no dither, per-frame DC removal,
pre-emphasis 0.97, FFT size rounded up to a power of two, power spectrum, triangular mel
bins between 20 Hz and Nyquist, natural log floored at float32 epsilon (so mel bins that
cover no FFT bin sit at -15.94, as in torchaudio). Torch only: shipped into exported
folders (``mae_ast/hf/remote_code.py``).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

FLOAT_EPS = torch.finfo(torch.float32).eps
# The input contract: a float waveform peaking above this is not on the [-1, 1] scale (int16
# range, usually). Loose on purpose: s3prl probes upstreams with torch.randn (peaks near 5).
MAX_ABS_AMPLITUDE = 32.0


def check_clip(x: torch.Tensor, name: str) -> torch.Tensor:
    """The input contract for one clip: a non-empty 1-D float tensor of finite samples on the
    [-1, 1] scale, returned as float32; else a ``ValueError`` naming ``name`` and the fix."""
    if not x.is_floating_point():
        raise ValueError(f"{name}: dtype {x.dtype} is not float; convert to float in [-1, 1] "
                         f"(for int16 audio: x.float() / 32768)")
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


def short_of_one_patch(frames: int, min_frames: int) -> str | None:
    """Why ``frames`` make no token (``min_frames``: one patch in time), or None: the one test
    and message of the models' input check and every reader of audio."""
    return f"{frames} frames is shorter than one patch ({min_frames} frames)" if frames < min_frames else None


def mel_scale(freq: torch.Tensor | float) -> torch.Tensor | float:
    """Kaldi's mel scale: 1127 ln(1 + f / 700)."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


@functools.lru_cache(maxsize=16)
def mel_banks(num_bins: int, fft_size: int, sample_rate: float, low_freq: float, high_freq: float) -> torch.Tensor:
    """Triangular mel filters, (num_bins, fft_size // 2 + 1); the Nyquist column is zero
    as in Kaldi, which builds filters over the first fft_size // 2 bins only."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"bad mel range: low_freq={low_freq}, high_freq={high_freq}")
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    edge = torch.arange(num_bins, dtype=torch.float32).unsqueeze(1)
    left = mel_low + edge * delta
    center = mel_low + (edge + 1.0) * delta
    right = mel_low + (edge + 2.0) * delta
    fft_mel = mel_scale((sample_rate / fft_size) * torch.arange(fft_size // 2, dtype=torch.float32)).unsqueeze(0)
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))


@functools.lru_cache(maxsize=16)
def povey_window(size: int) -> torch.Tensor:
    """Kaldi's povey window: a symmetric Hann window raised to 0.85."""
    return torch.hann_window(size, periodic=False).pow(0.85)


def fbank(waveform: torch.Tensor, num_mel_bins: int = 128, sample_rate: int = 16000, frame_length_ms: float = 25.0,
          frame_shift_ms: float = 10.0, preemphasis: float = 0.97, low_freq: float = 20.0,
          high_freq: float = 0.0) -> torch.Tensor:
    """Log-mel fbank of ``waveform`` (``(N,)`` or ``(B, N)``, scale [-1, 1]).

    Returns ``(frames, num_mel_bins)`` or ``(B, frames, num_mel_bins)`` in float32 on the
    input's device. Raises ``ValueError`` when the input is shorter than one window.
    """
    squeeze = waveform.dim() == 1
    wav = (waveform.unsqueeze(0) if squeeze else waveform).float()
    if wav.dim() != 2:
        raise ValueError(f"fbank expects (N,) or (B, N) audio, got shape {tuple(waveform.shape)}")
    window_size = int(sample_rate * frame_length_ms * 0.001)
    window_shift = int(sample_rate * frame_shift_ms * 0.001)
    if wav.shape[-1] < window_size:
        raise ValueError(f"audio of {wav.shape[-1]} samples is shorter than one {window_size}-sample window")
    fft_size = 1 << (window_size - 1).bit_length()

    power = _power_spectrum(wav.unfold(-1, window_size, window_shift), fft_size, preemphasis)
    banks = mel_banks(num_mel_bins, fft_size, float(sample_rate), low_freq, high_freq)
    mel = torch.matmul(power, banks.to(power.device).T)
    out = mel.clamp_(min=FLOAT_EPS).log_()
    return out.squeeze(0) if squeeze else out


def _power_spectrum(frames: torch.Tensor, fft_size: int, preemphasis: float) -> torch.Tensor:
    """``(B, F, W)`` frames (a strided view) -> ``(B, F, fft_size // 2 + 1)`` power.

    torchaudio's arithmetic written in place into the zero-padded FFT buffer (torchaudio
    makes five copies of the frames). The frames are bitwise torchaudio's; the power is
    re^2 + im^2 where torchaudio squares ``abs()`` (2x slower here), ~2.5e-7 relative apart."""
    window_size = frames.shape[-1]
    buf = frames.new_zeros(*frames.shape[:-1], fft_size)
    y = buf[..., :window_size]
    torch.sub(frames, frames.mean(dim=-1, keepdim=True), out=y)
    # Pre-emphasis y[k] - 0.97 y[k-1], with y[-1] := y[0] as Kaldi does.
    scaled = preemphasis * y
    y[..., 1:] -= scaled[..., :-1]
    y[..., :1] -= scaled[..., :1]
    y *= povey_window(window_size).to(y.device)
    spectrum = torch.fft.rfft(buf)
    return torch.addcmul(spectrum.real.square(), spectrum.imag, spectrum.imag)


def compute_deltas(feat: torch.Tensor, n: int = 2) -> torch.Tensor:
    """Regression deltas along time of ``(frames, dims)`` features, edges replicated
    (torchaudio's ``compute_deltas`` with its default window of 5, which the original
    dataset called)."""
    padded = F.pad(feat.T.unsqueeze(0), (n, n), mode="replicate")
    kernel = torch.arange(-n, n + 1, dtype=feat.dtype, device=feat.device).repeat(feat.shape[1], 1, 1)
    denom = n * (n + 1) * (2 * n + 1) / 3
    return (F.conv1d(padded, kernel, groups=feat.shape[1]) / denom).squeeze(0).T


def with_deltas(feat: torch.Tensor) -> torch.Tensor:
    """``(frames, mel)`` -> ``(frames, 3 * mel)``: features, deltas, delta-deltas."""
    d1 = compute_deltas(feat)
    return torch.cat([feat, d1, compute_deltas(d1)], dim=1)
