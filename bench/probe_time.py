"""Time mae-ast-probe's two parts, to extrapolate a probe of N clips of S seconds.

    python bench/probe_time.py [--model patch|frame] [--clips 16] [--seconds 10] [--batch-size 8]
        [--fit-clips 10000] [--dim 768] [--classes 50] [--skip-fit] [--out bench/results]

* Features: ``mae_ast.probe.extract_split`` (the probe's own code: FLAC read, fbank, the
  12-layer 768-d encoder of ``step_models.build``, every layer pooled) on ``--clips`` noise
  clips of ``--seconds`` written as FLAC; reported per clip.
* Fit: ``mae_ast.probe.fit_layer`` (the whole C grid, as the probe runs it) on random
  clustered features of ``--fit-clips`` x ``--dim`` (valid: a tenth of that), ``--classes``
  classes; measured directly, not extrapolated.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mae_ast.data.manifest import read_manifest  # noqa: E402
from mae_ast.loading import ready  # noqa: E402
from mae_ast.probe import ProbeConfig, Split, extract_split, fit_layer  # noqa: E402
from results_io import save_results  # noqa: E402
from step_models import build  # noqa: E402


def time_features(model_kind: str, clips: int, seconds: float, batch_size: int) -> tuple[float, float]:
    """(wall, CPU) seconds per clip of the probe's feature extraction (after one warm-up
    batch). CPU time says how much the wall time was stretched by other processes."""
    model = ready(build(model_kind, layerdrop=0.0), "cpu")
    rate = model.feature_spec.sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        lines = [tmp]
        for i in range(clips + batch_size):
            sf.write(os.path.join(tmp, f"{i}.flac"), rng.uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32),
                     rate)
            lines.append(f"{i}.flac\t{int(seconds * rate)}")
        for name, part in (("warm", lines[: 1 + batch_size]), ("timed", [tmp] + lines[1 + batch_size :])):
            path = os.path.join(tmp, f"{name}.tsv")
            with open(path, "w") as f:
                f.write("\n".join(part) + "\n")
            split = Split(name, path, read_manifest(path), [[0]] * (len(part) - 1))
            start, cpu = time.perf_counter(), time.process_time()
            extract_split(model, split, "mean", batch_size)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return elapsed / clips, cpu / clips


def time_fit(n: int, dim: int, classes: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    means = rng.normal(0, 0.15, (classes, dim))

    def draw(m):
        y = rng.integers(0, classes, m)
        return (5.0 + means[y] + rng.normal(0, 1, (m, dim))).astype(np.float32), y

    (xt, yt), (xv, yv) = draw(n), draw(n // 10)
    start, cpu = time.perf_counter(), time.process_time()
    fit = fit_layer(xt, yt, xv, yv, classes, False, ProbeConfig())
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"fit: C={fit.C:g}, valid accuracy {fit.valid['accuracy']:.3f}")
    return elapsed, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["patch", "frame"], default="patch")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--fit-clips", type=int, default=10000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--classes", type=int, default=50)
    p.add_argument("--skip-fit", action="store_true")
    p.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    args = p.parse_args()
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor(),
           "load_before": os.getloadavg()[0]}
    per_clip, cpu_per_clip = time_features(args.model, args.clips, args.seconds, args.batch_size)
    fit_s, fit_cpu_s = (None, None) if args.skip_fit else time_fit(args.fit_clips, args.dim, args.classes)
    env["load_after"] = os.getloadavg()[0]
    row = {"model": args.model, "seconds": args.seconds, "clips": args.clips, "s_per_clip": per_clip,
           "cpu_s_per_clip": cpu_per_clip, "fit_clips": args.fit_clips, "dim": args.dim, "classes": args.classes,
           "fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "extrapolated_10k_h": 10000 * per_clip / 3600}
    print(row, env)
    save_results(args.out, f"probe_time_{args.model}", env, [row])


if __name__ == "__main__":
    main()
