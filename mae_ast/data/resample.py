"""Band-limited resampling with a Hann-windowed sinc, the method (and defaults: 6 zero
crossings, roll-off 0.99) of ``torchaudio.functional.resample`` that the original used.

Output sample j is ``sum_i x[i] h(i / orig - j / new)``, with both rates divided by their
gcd. Two ways to evaluate that same sum:

* kernel bank (torchaudio's own way): the filter phases repeat every ``new`` outputs, so
  all outputs are one strided ``conv1d`` with ``new`` kernels of ``orig + 2 * width``
  taps. Fast, but the bank grows with the *reduced* rates: from 22051 Hz to 16 kHz the
  gcd is 1 and the bank has 16000 x 22069 = 353M weights (~14 GB of float64 temporaries
  to build it, 42 s); at 44101 Hz the process runs out of memory.
* direct: for each output, compute only the ``2 * width + 1`` weights it uses (the
  rest of its bank kernel, ``orig - 1`` taps, is zero). Cost and memory are
  proportional to the output length times the filter width, whatever the gcd.

The bank is used while it is small (``_MAX_KERNEL_ELEMENTS``), the direct sum above that.
Both evaluate the same filter at the same points, so every rate gets torchaudio's
features, not only the common ones. We chose this over a library such as soxr (python-
soxr, VHQ) because soxr's filter differs from torchaudio's (pass band to ~91% of
Nyquist, steeper), which would make odd-rate clips the only ones whose top mel bins
differ from the original recipe, and it would add a dependency and a GPU-to-CPU copy.
"""

from __future__ import annotations

import functools
import math

import torch

ZEROS = 6  # zero crossings of the sinc on each side (torchaudio's lowpass_filter_width)
ROLLOFF = 0.99  # cutoff as a fraction of the lower Nyquist rate (torchaudio's default)

# Largest kernel bank, new * (orig + 2 * width) weights after dividing by the gcd, built
# for the conv1d path. Every rate seen in practice is far below: to 16 kHz, 11.025 kHz
# needs 291k (the largest), 22.05 kHz 147k, 44.1 kHz 76k, 88.2 kHz 41k, 8/32/48/96 kHz
# under 200; between 44.1 and 48 kHz, 26k. Rates with a tiny gcd need hundreds of
# millions (22051 Hz: 353M). 2**21 (~2.1M) keeps 7x headroom over 11.025 kHz while
# capping the bank's float64 build (about six temporaries) near 100 MB and the cached
# bank at 16 MB.
_MAX_KERNEL_ELEMENTS = 2**21
# Elements per chunk on the direct path (rows x outputs x taps): its float64 weights and
# gathered samples stay near 100 MB whatever the clip length or batch.
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


# Fewest kernels the conv1d path runs with. With one or two phases (48 or 32 kHz to
# 16 kHz) the convolution has a single output channel, which oneDNN runs at a fraction
# of its speed; writing the same sum for `k` times the reduced rates gives k * new
# kernels, each the old one shifted by whole input steps (the same weights at the same
# points, zeros elsewhere): float32 output bitwise unchanged on the rates checked,
# float64 within 4e-15 (the weights' float64 arguments round once differently). 16
# kernels measured fastest on a CPU: 48 kHz -> 16 kHz 2.3 -> 0.95 ms per 10 s clip,
# 8 kHz 0.97 -> 0.47 ms.
_MIN_PHASES = 16


def _phases(orig: int, new: int) -> int:
    """The factor ``k`` the reduced rates are multiplied by for the kernel bank."""
    k = max(1, -(-_MIN_PHASES // new))
    while k > 1 and bank_elements(k * orig, k * new) > _MAX_KERNEL_ELEMENTS:
        k //= 2
    return k


def _resample_bank(x: torch.Tensor, orig: int, new: int, target: int) -> torch.Tensor:
    """``x``: (batch, samples). torchaudio's strided conv1d with one kernel per phase."""
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
    """Samples ``resample`` returns for ``num_samples``: known on the host before any
    audio is resampled (the batch collater plans crops with it)."""
    if orig_freq == new_freq:
        return num_samples
    gcd = math.gcd(int(orig_freq), int(new_freq))
    return math.ceil(int(new_freq) // gcd * num_samples / (int(orig_freq) // gcd))


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample the last axis of ``waveform`` from ``orig_freq`` to ``new_freq`` Hz.

    Output length is ``ceil(N * new / orig)``, as torchaudio's; float64 input stays
    float64, anything else comes back float32, on the input's device.
    """
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
