"""Data pipeline benchmarks for 10 s clips, in two parts.

    PYTHONPATH=. python bench/data_pipeline.py [--clips 64] [--workers 1,2,4,8,16] [--compare-clips 8]
        [--rounds 9] [--out bench/results]

1. Per core, ours against the ORIGINAL's dataset code, interleaved (``--compare-clips``
   clips per format, ``--rounds`` rounds; 0 skips it). One process, one thread. The
   original's ``__getitem__`` steps are replayed with the original's libraries: its
   decode calls (``soundfile.read`` in float64; PyAV ``frame.to_ndarray()`` per frame),
   ``torch`` mean over channels, then torchaudio's own ``functional.resample`` and
   ``compliance.kaldi.fbank`` (the installed torchaudio, else the modules unpacked from
   its wheel by ``scripts/fetch_torchaudio_reference.sh``, loaded as the tests load
   them). Ours is ``MAE_AST_Dataset.__getitem__`` (features in the worker), and with
   ``task.features_on_device`` the worker part only (decode, mono mix); the device part
   of that mode (batched resampling + fbank, ``FeatureSpec.compute_batch``) is timed
   apart, here on this CPU. Each round times every clip with both variants, alternating
   which goes first; the ratio is the median over rounds of the paired ratios with its
   interquartile range, and no ratio is printed when that range contains 1 (see
   ``paired.py``). The features of both are compared on every clip (max abs difference).
2. Clips/s through a torch DataLoader with the dataset's collater (``--workers``; empty
   to skip), batches of 8, and through the precomputed-fbank cache (``mae-ast-cache``).

Formats: 16 kHz mono flac, 44.1 kHz stereo flac, and 48 kHz stereo Opus in Matroska
(AudioSet's downloads). The clips are synthetic (tones and noise), written to a
temporary folder first.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

from paired import describe, paired_ratio, quartiles
from results_io import save_results
from mae_ast.data import MAE_AST_Dataset
from mae_ast.data.fbank_cache import write_cache
from mae_ast.data.mae_ast_dataset import features_from_waveforms
from tests.audio_files import encode_audio

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
REF_DIR = os.path.join(ROOT, ".cache", "torchaudio_ref")
FORMATS = {"flac16": ("flac", 16000, 1), "flac44": ("flac", 44100, 2), "mkv": ("mkv", 48000, 2)}


def synth(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(len(t))
    return np.stack([wav, 0.5 * wav], axis=1).astype(np.float32) if channels == 2 else wav.astype(np.float32)


def make_set(folder: str, kind: str, n: int) -> str:
    """``n`` synthetic 10 s clips of format ``kind`` (a ``FORMATS`` key) and their manifest."""
    ext, rate, channels = FORMATS[kind]
    os.makedirs(os.path.join(folder, kind), exist_ok=True)
    rows = []
    for i in range(n):
        name = f"{kind}/clip{i:03d}.{ext}"
        wav = synth(10, rate, channels, i)
        if ext == "flac":
            sf.write(os.path.join(folder, name), wav, rate)
        else:
            encode_audio(os.path.join(folder, name), wav, rate)  # Opus in Matroska, as AudioSet's downloads
        rows.append(f"{name}\t{int(10 * rate)}")
    manifest = os.path.join(folder, f"{kind}.tsv")
    with open(manifest, "w") as f:
        f.write(folder + "\n" + "\n".join(rows) + "\n")
    return manifest


# ---- the original's dataset code, with the original's libraries ------------------------

def load_torchaudio_reference():
    """torchaudio's ``kaldi.fbank`` and ``functional.resample`` and where they came from:
    the installed package, else its own source files from ``.cache/torchaudio_ref`` (only
    the three resampling functions of ``functional.py`` are executed, as
    tests/test_fbank.py does); None when neither is there."""
    try:
        import torchaudio.compliance.kaldi as kaldi
        import torchaudio.functional as F

        return kaldi.fbank, F.resample, "torchaudio " + __import__("torchaudio").__version__
    except Exception:
        pass
    import ast
    import importlib.util
    import math
    import types
    import warnings
    from typing import Optional

    if not os.path.exists(os.path.join(REF_DIR, "kaldi.py")):
        return None
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # kaldi.py only imports it
    spec = importlib.util.spec_from_file_location("kaldi_ref", os.path.join(REF_DIR, "kaldi.py"))
    kaldi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kaldi)
    path = os.path.join(REF_DIR, "functional.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    names = {"_get_sinc_resample_kernel", "_apply_sinc_resample_kernel", "resample"}
    ns = {"torch": torch, "math": math, "Optional": Optional, "Tensor": torch.Tensor,
          "_CPU": torch.device("cpu"), "warnings": warnings}
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    exec(compile(ast.Module(body, []), path, "exec"), ns)
    return kaldi.fbank, ns["resample"], "torchaudio wheel source (.cache/torchaudio_ref)"


def original_features(path: str, kaldi_fbank, ta_resample, sample_rate: int = 16000) -> torch.Tensor:
    """The original dataset's ``get_audio`` + ``postprocess_spec`` for fbank (128 bins,
    no deltas), call for call."""
    if path.endswith(".mkv"):
        import av

        with av.open(path, metadata_errors="ignore") as container:
            decode = container.decode(audio=0)
            first = next(decode)
            rate = first.sample_rate
            frames = [first.to_ndarray()] + [frame.to_ndarray() for frame in decode]
            wav = torch.as_tensor(np.concatenate(frames, 1)).mean(dim=0)
    else:
        wav, rate = sf.read(path)
        wav = torch.from_numpy(wav).float()
    if wav.dim() == 2:
        wav = wav.mean(-1)
    if rate != sample_rate:
        wav = ta_resample(wav, rate, sample_rate)
    return kaldi_fbank(wav.view(1, -1), sample_frequency=sample_rate, use_energy=False, num_mel_bins=128)


def _timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def compare_per_core(manifest: str, kind: str, rounds: int, ref) -> dict:
    """One format: ms per clip of the original, ours, and ours' worker part with
    ``features_on_device``, over ``rounds`` interleaved rounds; paired ratios."""
    kaldi_fbank, ta_resample, _ = ref
    ours = MAE_AST_Dataset(manifest, max_sample_size=250000)
    worker = MAE_AST_Dataset(manifest, max_sample_size=250000)
    worker.decode_only = True
    paths, n = ours.paths, len(ours)
    variants = {
        "original": lambda i: original_features(paths[i], kaldi_fbank, ta_resample),
        "ours": lambda i: ours[i]["source"],
        "ours_decode_only": lambda i: worker[i],
    }
    diff = max(float((variants["original"](i) - variants["ours"](i)).abs().max()) for i in range(n))
    totals = {v: [] for v in variants}
    for r in range(rounds):
        spent = dict.fromkeys(variants, 0.0)
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for i in range(n):
            for v in order:
                spent[v] += _timed(variants[v], i)[0]
        for v in variants:
            totals[v].append(1000 * spent[v] / n)
    # The device part of features_on_device, timed here on this CPU: a batch of all clips.
    batch = worker.collater([worker[i] for i in range(n)])
    device_ms = []
    for _ in range(max(3, rounds // 2)):
        device_ms.append(1000 * _timed(features_from_waveforms, batch, worker.feature_spec)[0] / n)
    row = {"format": kind, "clips": n, "rounds": rounds, "max_abs_feature_diff": diff,
           "device_part_ms_per_clip_on_this_cpu": statistics.median(device_ms)}
    for v, ms in totals.items():
        q1, med, q3 = quartiles(ms)
        row[f"{v}_ms"] = med
        row[f"{v}_ms_q1"], row[f"{v}_ms_q3"] = q1, q3
    row["vs_original"] = paired_ratio(totals["original"], totals["ours"])
    row["decode_only_vs_original"] = paired_ratio(totals["original"], totals["ours_decode_only"])
    return row


def print_comparison(rows: list[dict], ref_name: str) -> None:
    print(f"\nper core (1 thread), ms per 10 s clip: median (IQR) over rounds; reference: {ref_name}")
    print(f"{'format':8}{'original':>20}{'ours':>20}{'ours/decode-only':>20}"
          f"{'ours vs orig':>24}{'decode-only vs orig':>24}{'device part':>13}{'max diff':>10}")
    def ms(r: dict, v: str) -> str:
        return f"{r[v + '_ms']:.1f} ({r[v + '_ms_q1']:.1f}-{r[v + '_ms_q3']:.1f})"

    for r in rows:
        print(f"{r['format']:8}{ms(r, 'original'):>20}{ms(r, 'ours'):>20}{ms(r, 'ours_decode_only'):>20}"
              f"{describe(r['vs_original']):>24}{describe(r['decode_only_vs_original']):>24}"
              f"{r['device_part_ms_per_clip_on_this_cpu']:>11.1f}ms{r['max_abs_feature_diff']:>10.1e}")


def throughput(manifest: str, workers: int, batch: int = 8, cache: str | None = None) -> float:
    ds = MAE_AST_Dataset(manifest, max_sample_size=250000)
    if cache:
        ds.use_cache(cache, os.path.basename(manifest)[: -len(".tsv")])
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=ds.collater,
                                         shuffle=False, persistent_workers=False)
    t0 = time.perf_counter()
    clips = sum(len(b["id"]) for b in loader)
    return clips / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64, help="clips per format for the DataLoader table")
    parser.add_argument("--workers", default=None,
                        help="comma-separated worker counts (default 0,1,2,..,cores; empty: skip the table)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--compare-clips", type=int, default=8, help="clips per format, per-core comparison (0: skip)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds of the per-core comparison")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.workers is None:
        workers = sorted({0, 1, 2, 4, 8, 16, cores} & set(range(cores + 1)))
    else:
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
    torch.set_num_threads(1)  # one core per worker, as in fairseq's dataloader
    formats = args.formats.split(",")
    rows, compared, ref_name = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        ref = load_torchaudio_reference() if args.compare_clips else None
        if args.compare_clips and ref is None:
            print("no torchaudio and no .cache/torchaudio_ref (scripts/fetch_torchaudio_reference.sh): "
                  "per-core comparison with the original skipped")
        if ref is not None:
            ref_name = ref[2]
            for kind in formats:
                manifest = make_set(os.path.join(tmp, "compare"), kind, args.compare_clips)
                compared.append(compare_per_core(manifest, kind, args.rounds, ref))
                print(f"  {kind:8} ours vs original {describe(compared[-1]['vs_original'])}, "
                      f"decode-only {describe(compared[-1]['decode_only_vs_original'])}", flush=True)
            print_comparison(compared, ref_name)
        for kind in formats if workers else []:
            manifest = make_set(tmp, kind, args.clips)
            cache = os.path.join(tmp, "cache")
            write_cache(MAE_AST_Dataset(manifest), kind, cache, workers=max(workers))
            for source, cache_dir in ((kind, None), (f"{kind} cached", cache)):
                for w in workers:
                    rate = throughput(manifest, w, cache=cache_dir)
                    rows.append({"format": source, "workers": w, "clips_per_s": rate,
                                 "ms_per_clip_per_core": 1000 * max(w, 1) / rate})
                    print(f"  {source:12} workers={w:<3} {rate:8.1f} clips/s", flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    env = {"machine": platform.processor() or platform.machine(), "cores": cores, "torch": torch.__version__,
           "clips": args.clips, "date": time.strftime("%Y-%m-%d %H:%M"), "reference": ref_name,
           "load_average_at_end": load, "per_core": compared}
    if rows:
        print(f"\n{env['cores']} cores, torch {env['torch']}, {args.clips} clips x 10 s per format")
        print(f"{'source':14}{'workers':>8}{'clips/s':>10}{'ms/clip/core':>14}")
        for r in rows:
            print(f"{r['format']:14}{r['workers']:>8}{r['clips_per_s']:>10.1f}{r['ms_per_clip_per_core']:>14.1f}")
    print(f"load average at the end: {load}")
    path = save_results(args.out, f"data_pipeline_{cores}cores" + (f"_{args.tag}" if args.tag else ""), env, rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
