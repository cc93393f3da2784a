"""Fine-tuning augmentations on log-mel filterbanks, after SSAST's recipe (its ``dataloader.py``).

A clip is ``(frames, bins)``, a batch ``(B, frames, bins)``; functions take either, draw per
clip from ``generator`` (a CPU ``torch.Generator``) or torch's global RNG, and never write
into their input. Order: normalise, mask, add noise, roll in time. SSAST masks the *raw*
log-mel with 0 before normalising ``(x - mean) / (2 * std)``, so its masked cells land near
+0.47 (AudioSet mean -4.27, std 4.57); here masks follow normalisation (the classifier's own
BatchNorm, whose statistics the dataset does not know) with 0, the mean. Mixup mixes fbanks
within a batch, not waveforms as SSAST.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["spec_augment", "MixupDraw", "draw_mixup", "apply_mixup", "add_noise", "time_roll",
           "augment_normalised"]
# SSAST's time roll: up to 10 frames either way (its np.random.randint(-10, 10)).
MAX_ROLL = 10


def _as_batch(fbank: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(B, frames, bins)`` and whether it was a single clip."""
    if fbank.dim() == 2:
        return fbank.unsqueeze(0), True
    if fbank.dim() == 3:
        return fbank, False
    raise ValueError(f"expected (frames, bins) or (B, frames, bins), got shape {tuple(fbank.shape)}")


def _draw_bands(batch: int, size: int, max_width: int, generator: torch.Generator | None) -> torch.Tensor:
    """(batch, size) bool: one band per row, width uniform in [0, max_width) (at most
    ``size``), then its start uniform where it fits (torchaudio's masking semantic)."""
    if max_width <= 0:
        return torch.zeros(batch, size, dtype=torch.bool)
    width = torch.randint(0, min(max_width, size + 1), (batch,), generator=generator)
    start = (torch.rand(batch, generator=generator) * (size - width + 1)).long()
    start = torch.minimum(start, size - width)  # rand() < 1, but guard float rounding at the edge
    idx = torch.arange(size)
    return (idx >= start[:, None]) & (idx < (start + width)[:, None])


def spec_augment(
    fbank: torch.Tensor, freqm: int, timem: int, generator: torch.Generator | None = None, fill: float = 0.0
) -> torch.Tensor:
    """One frequency band (width in [0, freqm) bins) and one time band (in [0, timem)
    frames) per clip set to ``fill`` (SpecAugment without time warping); 0 disables one.
    SSAST exactly: before normalising with ``fill=0``, or after with ``-mean / (2 * std)``."""
    if freqm < 0 or timem < 0:
        raise ValueError(f"mask widths must be >= 0, got freqm={freqm}, timem={timem}")
    batch, single = _as_batch(fbank)
    b, frames, bins = batch.shape
    freq_band = _draw_bands(b, bins, freqm, generator).to(fbank.device)  # (B, bins)
    time_band = _draw_bands(b, frames, timem, generator).to(fbank.device)  # (B, frames)
    masked = freq_band[:, None, :] | time_band[:, :, None]
    out = batch.masked_fill(masked, fill)
    return out.squeeze(0) if single else out


class MixupDraw(NamedTuple):
    """For clip i, ``x'_i = lam[i] x_i + (1 - lam[i]) x_partner[i]``; unmixed rows have
    partner i and lam 1. All ``(B,)``."""

    mixed: torch.Tensor
    partner: torch.Tensor
    lam: torch.Tensor


def draw_mixup(
    batch_size: int, prob: float, alpha: float = 10.0, generator: torch.Generator | None = None
) -> MixupDraw:
    """Each clip is mixed with probability ``prob``, with a partner uniform over the
    *other* clips (a batch of one is never mixed), lam ~ Beta(alpha, alpha) drawn by numpy
    from a seed taken from ``generator`` (torch's Beta sampler accepts no generator)."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must lie in [0, 1], got {prob}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    # Draw everything unconditionally so the generator advances the same way whatever prob is.
    coin = torch.rand(batch_size, generator=generator)
    offset = torch.randint(1, max(batch_size, 2), (batch_size,), generator=generator)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=batch_size))

    own = torch.arange(batch_size)
    mixed = (coin < prob) & (batch_size > 1)
    partner = torch.where(mixed, (own + offset) % batch_size, own)
    lam = torch.where(mixed, lam, torch.ones_like(lam))
    return MixupDraw(mixed=mixed, partner=partner, lam=lam)


def apply_mixup(x: torch.Tensor, y: torch.Tensor, draw: MixupDraw) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix features ``(B, ...)`` and float targets ``(B, C)`` as ``draw`` says; unmixed
    rows come back bit-for-bit unchanged."""
    if x.shape[0] != y.shape[0] or x.shape[0] != draw.lam.shape[0]:
        raise ValueError(f"batch sizes differ: x {x.shape[0]}, y {y.shape[0]}, draw {draw.lam.shape[0]}")
    device = x.device
    mixed, partner = draw.mixed.to(device), draw.partner.to(device)

    def combine(t: torch.Tensor) -> torch.Tensor:
        lam = draw.lam.to(device=device, dtype=t.dtype).view(-1, *([1] * (t.dim() - 1)))
        return torch.where(mixed.view(lam.shape), lam * t + (1.0 - lam) * t[partner], t)

    return combine(x), combine(y)


def add_noise(fbank: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """SSAST's noise on the *normalised* fbank: ``+ U(0,1)[frames, bins] * u / 10``, one
    u ~ U(0,1) per clip (non-negative, as SSAST's)."""
    batch, single = _as_batch(fbank)
    scale = torch.rand(batch.shape[0], 1, 1, generator=generator)
    noise = torch.rand(batch.shape, generator=generator) * scale / 10.0
    out = batch + noise.to(device=fbank.device, dtype=fbank.dtype)
    return out.squeeze(0) if single else out


def time_roll(fbank: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Roll each clip in time (circular, as SSAST's ``torch.roll``) by an integer uniform
    in [-max_shift, max_shift] (SSAST's [-10, 9] is numpy's exclusive high)."""
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    batch, single = _as_batch(fbank)
    shifts = torch.randint(-max_shift, max_shift + 1, (batch.shape[0],), generator=generator)
    out = torch.stack([torch.roll(clip, int(s), dims=0) for clip, s in zip(batch, shifts)])
    return out.squeeze(0) if single else out


def augment_normalised(x: torch.Tensor, padding_mask: torch.Tensor | None, freqm: int, timem: int,
                       noise: bool) -> torch.Tensor:
    """Fine-tuning's augmentation of a NORMALISED batch (order: module docstring). Each clip
    rolls within its valid frames, so padding stays where ``padding_mask`` says (SSAST rolls
    the zero-padded clip whole)."""
    if freqm or timem:
        x = spec_augment(x, int(freqm), int(timem), fill=0.0)
    if noise:
        x = add_noise(x)
        valid = [x.shape[1]] * len(x) if padding_mask is None else (~padding_mask).sum(1).tolist()
        x = torch.stack([torch.cat([time_roll(c[:n], MAX_ROLL), c[n:]]) for c, n in zip(x, valid)])
    return x
