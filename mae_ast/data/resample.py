"""Band-limited resampling with a Hann-windowed sinc, the method (and defaults: 6 zero
crossings, roll-off 0.99) of ``torchaudio.functional.resample`` that the original used.

Output sample j is ``sum_i x[i] h(i / orig - j / new)``. The filter phases repeat
every ``new`` outputs (after dividing both rates by their gcd), so all outputs are one
strided ``conv1d`` with ``new`` kernels.
"""

from __future__ import annotations

import functools
import math

import torch


@functools.lru_cache(maxsize=32)
def _sinc_kernels(
    orig: int, new: int, zeros: int = 6, rolloff: float = 0.99
) -> tuple[torch.Tensor, int]:
    cutoff = min(orig, new) * rolloff
    width = math.ceil(zeros * orig / cutoff)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + idx
    t = (t * cutoff).clamp(-zeros, zeros)
    window = torch.cos(t * math.pi / zeros / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return (sinc * window * (cutoff / orig)).float(), width


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample the last axis of ``waveform`` from ``orig_freq`` to ``new_freq`` Hz.

    Output length is ``ceil(N * new / orig)``, as torchaudio's.
    """
    if orig_freq == new_freq:
        return waveform
    if int(orig_freq) != orig_freq or int(new_freq) != new_freq or min(orig_freq, new_freq) <= 0:
        raise ValueError(f"sample rates must be positive integers, got {orig_freq} -> {new_freq}")
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    kernels, width = _sinc_kernels(orig, new)

    shape = waveform.shape
    x = waveform.reshape(-1, 1, shape[-1]).float()
    x = torch.nn.functional.pad(x, (width, width + orig))
    y = torch.nn.functional.conv1d(x, kernels.to(x.device), stride=orig)  # (B, new, steps)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    target = math.ceil(new * shape[-1] / orig)
    return y[..., :target].reshape(*shape[:-1], target)
