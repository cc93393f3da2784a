"""Fine-tuning augmentations on log-mel filterbanks, after SSAST's recipe.

Shapes: a clip is ``(frames, bins)``, a batch ``(B, frames, bins)``; every function that
takes one also takes the other and draws independently per clip. All randomness comes from
the ``generator`` argument when one is given (``torch.Generator`` on the CPU), so a seeded
generator gives the same augmentation every time; with ``None`` the global torch RNG is used.
Inputs are never modified in place.

Where SSAST's order matters (its ``dataloader.py``): it pads/crops and applies SpecAugment
to the *raw* log-mel (masks filled with 0), then normalises ``(x - mean) / (2 * std)``, then
adds noise and rolls in time. A raw-log-mel 0 is far above the typical level (AudioSet mean
-4.27, std 4.57), so SSAST's masked cells end up at about +0.47 after normalisation, not at
the mean. Here the fill value is a parameter, see :func:`spec_augment`.

One deliberate difference: SSAST mixes *waveforms* of a clip and a random clip of the whole
dataset before computing the fbank; :func:`draw_mixup` + :func:`apply_mixup` mix fbanks within a batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["spec_augment", "MixupDraw", "draw_mixup", "apply_mixup", "add_noise", "time_roll",
           "augment_normalised", "pad_or_crop"]
# SSAST's time roll: up to 10 frames either way (its np.random.randint(-10, 10)).
MAX_ROLL = 10


def _as_batch(fbank: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(frames, bins) or (B, frames, bins) -> (B, frames, bins) and whether it was a single clip."""
    if fbank.dim() == 2:
        return fbank.unsqueeze(0), True
    if fbank.dim() == 3:
        return fbank, False
    raise ValueError(f"expected (frames, bins) or (B, frames, bins), got shape {tuple(fbank.shape)}")


def _draw_bands(batch: int, size: int, max_width: int, generator: torch.Generator | None) -> torch.Tensor:
    """(batch, size) bool: one contiguous band per row, width uniform in [0, max_width), start uniform.

    Width is drawn first, then the start uniformly among the ``size - width + 1`` positions
    where the band fits (torchaudio's masking semantic). A width that would exceed ``size``
    is not possible: widths are drawn from [0, min(max_width, size + 1)).
    """
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
    """One frequency mask and one time mask per clip (SpecAugment without time warping).

    fbank: (frames, bins) or (B, frames, bins) -> same shape, a new tensor.
    The frequency band has width uniform in [0, freqm) bins, the time band width uniform in
    [0, timem) frames; each band's start is uniform over the positions where it fits. 0
    disables a mask. Masked cells are set to ``fill``.

    Which ``fill`` to use depends on where the caller puts this relative to normalisation:
    after normalisation, ``fill=0`` fills with the dataset mean (the clean choice); to
    reproduce SSAST exactly either call this *before* normalising with ``fill=0`` or after it
    with ``fill=-mean / (2 * std)``.
    """
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
    """The random part of a mixup: for clip i, ``x'_i = lam[i] x_i + (1 - lam[i]) x_partner[i]``.

    mixed: (B,) bool; partner: (B,) long (i itself where not mixed); lam: (B,) float (1 where not mixed).
    """

    mixed: torch.Tensor
    partner: torch.Tensor
    lam: torch.Tensor


def draw_mixup(
    batch_size: int, prob: float, alpha: float = 10.0, generator: torch.Generator | None = None
) -> MixupDraw:
    """Which clips to mix, with whom, and how much.

    Each clip is mixed with probability ``prob``; its partner is uniform over the *other*
    clips of the batch (mixing a clip with itself would be a no-op), so a batch of one is
    never mixed. lam ~ Beta(alpha, alpha), drawn by numpy from a seed taken from
    ``generator`` (torch's Beta sampler accepts no generator).
    """
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
    """Mix a batch as ``draw`` says. x: (B, ...) features; y: (B, C) float targets. Same shapes out.

    Unmixed rows are returned bit-for-bit unchanged.
    """
    if x.shape[0] != y.shape[0] or x.shape[0] != draw.lam.shape[0]:
        raise ValueError(f"batch sizes differ: x {x.shape[0]}, y {y.shape[0]}, draw {draw.lam.shape[0]}")
    device = x.device
    mixed, partner = draw.mixed.to(device), draw.partner.to(device)

    def combine(t: torch.Tensor) -> torch.Tensor:
        lam = draw.lam.to(device=device, dtype=t.dtype).view(-1, *([1] * (t.dim() - 1)))
        blended = lam * t + (1.0 - lam) * t[partner]
        return torch.where(mixed.view(-1, *([1] * (t.dim() - 1))), blended, t)

    return combine(x), combine(y)


def add_noise(fbank: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """SSAST's noise: ``fbank + U(0,1)[frames, bins] * u / 10`` with one u ~ U(0,1) per clip.

    Meant for the *normalised* fbank (SSAST adds it after normalisation), so the noise is at
    most 0.1 normalised units, and it is non-negative (a small upward shift, as in SSAST).
    fbank: (frames, bins) or (B, frames, bins) -> same shape.
    """
    batch, single = _as_batch(fbank)
    scale = torch.rand(batch.shape[0], 1, 1, generator=generator)
    noise = torch.rand(batch.shape, generator=generator) * scale / 10.0
    out = batch + noise.to(device=fbank.device, dtype=fbank.dtype)
    return out.squeeze(0) if single else out


def time_roll(fbank: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Circularly shift each clip in time by an integer uniform in [-max_shift, max_shift].

    Circular, as SSAST's ``torch.roll``: frames pushed off one end (padding included) come
    back at the other. SSAST draws from [-10, 9] (numpy's exclusive high); this range is
    symmetric. fbank: (frames, bins) or (B, frames, bins) -> same shape.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    batch, single = _as_batch(fbank)
    shifts = torch.randint(-max_shift, max_shift + 1, (batch.shape[0],), generator=generator)
    out = torch.stack([torch.roll(clip, int(s), dims=0) for clip, s in zip(batch, shifts)])
    return out.squeeze(0) if single else out


def augment_normalised(x: torch.Tensor, padding_mask: torch.Tensor | None, freqm: int, timem: int,
                       noise: bool) -> torch.Tensor:
    """Fine-tuning's training-time augmentation of a NORMALISED batch ``(B, frames, bins)``:
    SpecAugment with fill 0 (= the mean), then SSAST's noise and time roll.

    SSAST masks the raw log-mel and normalises afterwards (see the module docstring). The
    classifier's normalisation is its encoder's own BatchNorm, whose statistics the dataset
    does not know, so the masks come after it, filled with the mean: the clean version of
    SSAST's intent. Each clip is rolled within its valid frames, so padding stays at the
    end where ``padding_mask`` says it is (SSAST rolls the zero-padded clip whole)."""
    if freqm or timem:
        x = spec_augment(x, int(freqm), int(timem), fill=0.0)
    if noise:
        x = add_noise(x)
        valid = [x.shape[1]] * len(x) if padding_mask is None else (~padding_mask).sum(1).tolist()
        x = torch.stack([torch.cat([time_roll(c[:n], MAX_ROLL), c[n:]]) for c, n in zip(x, valid)])
    return x


def pad_or_crop(fbank: torch.Tensor, target_length: int, pad_value: float = 0.0) -> tuple[torch.Tensor, int]:
    """Bring one clip to exactly ``target_length`` frames. fbank: (frames, bins) -> (target_length, bins).

    Shorter clips are padded at the end with ``pad_value`` (SSAST pads the raw log-mel with
    0, before normalisation); longer ones keep their first frames (a random crop is the
    dataset's ``crop_start`` applied before). Returns (fbank, valid_frames), valid_frames =
    min(frames, target_length): the frames that hold audio, for a padding mask.
    """
    if fbank.dim() != 2:
        raise ValueError(f"expected one clip (frames, bins), got shape {tuple(fbank.shape)}")
    if target_length <= 0:
        raise ValueError(f"target_length must be > 0, got {target_length}")
    frames = fbank.shape[0]
    if frames < target_length:
        padded = fbank.new_full((target_length, fbank.shape[1]), pad_value)
        padded[:frames] = fbank
        return padded, frames
    return fbank[:target_length].clone(), target_length
