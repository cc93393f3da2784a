"""Band-limited resampling with a Hann-windowed sinc, the method (and defaults: 6 zero
crossings, roll-off 0.99) of ``torchaudio.functional.resample`` that the original used.
Output sample j is ``sum_i x[i] h(i / orig - j / new)`` (rates divided by their gcd),
evaluated two ways: torchaudio's kernel bank (one strided ``conv1d`` with ``new`` kernels
of ``orig + 2 * width`` taps), while the bank is small; above that (22051 Hz -> 16 kHz
needs 353M weights, ~14 GB to build) a direct sum of each output's ``2 * width + 1``
nonzero weights, whose cost is independent of the gcd. Both evaluate the same filter at
the same points, so every rate gets torchaudio's features. Not soxr: its filter differs
(pass band to ~91% of Nyquist), so odd-rate clips' top mel bins would differ.
"""

from __future__ import annotations

import functools
import math

import torch

ZEROS = 6  # zero crossings of the sinc on each side (torchaudio's lowpass_filter_width)
ROLLOFF = 0.99  # cutoff as a fraction of the lower Nyquist rate (torchaudio's default)

# Largest kernel bank (weights) built for the conv1d path: 7x the largest common rate's
# (11.025 kHz -> 16 kHz: 291k), while its float64 build stays near 100 MB.
_MAX_KERNEL_ELEMENTS = 2**21
# Elements per chunk on the direct path (rows x outputs x taps): ~100 MB of float64 temporaries.
_DIRECT_CHUNK_ELEMENTS = 2**20


def _filter(orig: int, new: int) -> tuple[float, int]:
    """Cutoff (in reduced-rate units) and the half-width in input samples, as torchaudio."""
    cutoff = min(orig, new) * ROLLOFF
    return cutoff, math.ceil(ZEROS * orig / cutoff)


def _windowed_sinc(t: torch.Tensor, cutoff: float, orig: int) -> torch.Tensor:
    """Filter weight at ``t = i / orig - j / new`` (float64), torchaudio's formula."""
    t = (t * cutoff).clamp(-ZEROS, ZEROS)
    window = torch.cos(t * math.pi / ZEROS / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return sinc * window * (cutoff / orig)


def bank_elements(orig: int, new: int) -> int:
    """Weights in the conv1d kernel bank for the reduced rates ``orig -> new``."""
    return new * (orig + 2 * _filter(orig, new)[1])


@functools.lru_cache(maxsize=32)
def _sinc_kernels(orig: int, new: int) -> tuple[torch.Tensor, int]:
    cutoff, width = _filter(orig, new)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + idx
    return _windowed_sinc(t, cutoff, orig), width


# Fewest kernels the conv1d path runs with: oneDNN runs a single output channel (48 kHz ->
# 16 kHz) slowly, so the sum is written for k times the reduced rates (the same weights
# shifted by whole input steps; float32 output bitwise unchanged). 16 measured fastest.
_MIN_PHASES = 16


def _phases(orig: int, new: int) -> int:
    """The factor ``k`` the reduced rates are multiplied by for the kernel bank."""
    k = max(1, -(-_MIN_PHASES // new))
    while k > 1 and bank_elements(k * orig, k * new) > _MAX_KERNEL_ELEMENTS:
        k //= 2
    return k


def _resample_bank(x: torch.Tensor, orig: int, new: int, target: int) -> torch.Tensor:
    """``x``: (batch, samples). torchaudio's strided conv1d, one kernel per phase."""
    k = _phases(orig, new)
    orig, new = k * orig, k * new
    kernels, width = _sinc_kernels(orig, new)
    padded = torch.nn.functional.pad(x[:, None], (width, width + orig))
    y = torch.nn.functional.conv1d(padded, kernels.to(x.device, x.dtype), stride=orig)
    return y.transpose(1, 2).reshape(x.shape[0], -1)[:, :target]


def _resample_direct(x: torch.Tensor, orig: int, new: int, target: int) -> torch.Tensor:
    """``x``: (batch, samples). The same sum, with each output's weights computed on the fly."""
    cutoff, width = _filter(orig, new)
    n = x.shape[-1]
    # Output j sits at input position j * orig / new; its nonzero taps lie within
    # `width` samples of floor of that position (see _filter), so 2 * width + 1 suffice.
    offsets = torch.arange(-width, width + 1, device=x.device)
    step = max(1, _DIRECT_CHUNK_ELEMENTS // (len(offsets) * max(1, x.shape[0])))
    chunks = []
    for start in range(0, target, step):
        j = torch.arange(start, min(start + step, target), device=x.device)[:, None]
        i = (j * orig) // new + offsets  # (outputs, taps), input sample indices
        # i / orig - j / new, from exact integers: no drift along long clips.
        t = (i * new - j * orig).double() / (orig * new)
        weights = _windowed_sinc(t, cutoff, orig).to(x.dtype)
        inside = (i >= 0) & (i < n)  # outside the clip is zero padding, as torchaudio's
        taps = x[:, i.clamp(0, n - 1)] * inside.to(x.dtype)
        chunks.append((taps * weights).sum(-1))
    return torch.cat(chunks, dim=-1) if chunks else x.new_zeros(x.shape[0], 0)


def resampled_length(num_samples: int, orig_freq: int, new_freq: int) -> int:
    """Samples ``resample`` returns for ``num_samples`` (known on the host, before resampling)."""
    if orig_freq == new_freq:
        return num_samples
    gcd = math.gcd(int(orig_freq), int(new_freq))
    return math.ceil(int(new_freq) // gcd * num_samples / (int(orig_freq) // gcd))


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """The last axis of ``waveform`` resampled to ``new_freq`` Hz, ``ceil(N * new / orig)``
    long (as torchaudio's), float64 if given float64, else float32, on its device."""
    if orig_freq == new_freq:
        return waveform
    if int(orig_freq) != orig_freq or int(new_freq) != new_freq or min(orig_freq, new_freq) <= 0:
        raise ValueError(f"sample rates must be positive integers, got {orig_freq} -> {new_freq}")
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd

    shape = waveform.shape
    dtype = torch.float64 if waveform.dtype == torch.float64 else torch.float32
    x = waveform.reshape(-1, shape[-1]).to(dtype)
    target = resampled_length(shape[-1], orig_freq, new_freq)
    small = bank_elements(orig, new) <= _MAX_KERNEL_ELEMENTS
    y = (_resample_bank if small else _resample_direct)(x, orig, new, target)
    return y.reshape(*shape[:-1], target)
