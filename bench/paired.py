"""Ratios between two variants timed on a shared, noisy machine, and when to refuse one.

Timings are taken interleaved (variant A, then B, then A...), so a burst of load from
other processes hits both alike; each pair gives one ratio. We report the median of
those ratios with their interquartile range, and print no ratio at all when that range
contains 1.0: the difference is then inside the noise and a number would only mislead.
"""

from __future__ import annotations

import statistics


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3); with fewer than 4 values, (min, median, max)."""
    v = sorted(values)
    if len(v) < 4:
        return v[0], statistics.median(v), v[-1]
    q1, q2, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return q1, q2, q3


def paired_ratio(base: list[float], ours: list[float]) -> dict:
    """``base[i] / ours[i]`` for paired timings (> 1: ours is faster): median, IQR, and
    ``noise`` when the IQR contains 1."""
    if len(base) != len(ours) or not base:
        raise ValueError("paired_ratio needs two equally long, non-empty lists of timings")
    q1, med, q3 = quartiles([b / o for b, o in zip(base, ours)])
    return {"ratio": med, "ratio_q1": q1, "ratio_q3": q3, "pairs": len(base), "noise": q1 <= 1.0 <= q3}


def describe(r: dict | None) -> str:
    """``1.42x (1.35-1.50)``, or ``noise (0.95-1.08)`` when no ratio may be claimed."""
    if r is None:
        return "-"
    spread = f"({r['ratio_q1']:.2f}-{r['ratio_q3']:.2f})"
    return f"noise {spread}" if r["noise"] else f"{r['ratio']:.2f}x {spread}"
