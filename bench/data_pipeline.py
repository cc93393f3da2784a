"""Clips per second of the data pipeline: manifest -> decode -> resample -> fbank ->
crop and collate, as fairseq's dataloader runs it, for 10 s clips.

    python bench/data_pipeline.py [--clips 64] [--workers 1,2,4,8,16] [--out bench/results]

Formats: 16 kHz mono flac, and 48 kHz stereo Opus in Matroska (AudioSet's downloads:
decode and resampling both cost). The clips are synthetic (tones and noise) and are
written to a temporary folder first, and each set is also read back through the
precomputed-fbank cache (``mae-ast-cache``). Each configuration reads every clip once through
a torch DataLoader with the dataset's collater, batches of 8 clips (so workers
have batches to share).
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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from results_io import save_results  # noqa: E402
from mae_ast.data import MAE_AST_Dataset  # noqa: E402
from mae_ast.data.fbank_cache import write_cache  # noqa: E402


def synth(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(len(t))
    return np.stack([wav, 0.5 * wav], axis=1).astype(np.float32) if channels == 2 else wav.astype(np.float32)


def write_mkv(path: str, wav: np.ndarray, rate: int) -> None:
    import av

    with av.open(path, "w", format="matroska") as out:
        stream = out.add_stream("libopus", rate=rate, layout="stereo")
        fmt = stream.codec_context.format
        for start in range(0, len(wav), 960):
            chunk = wav[start : start + 960]
            if fmt.name.startswith("s16"):
                chunk = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)
            # planar formats take (channels, samples); packed ones interleaved (1, samples*channels)
            chunk = np.ascontiguousarray(chunk.T) if fmt.is_planar else chunk.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format=fmt.name, layout="stereo")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def make_set(folder: str, kind: str, n: int) -> str:
    os.makedirs(os.path.join(folder, kind), exist_ok=True)
    rows = []
    for i in range(n):
        if kind == "flac":
            name, rate = f"{kind}/clip{i:03d}.flac", 16000
            sf.write(os.path.join(folder, name), synth(10, rate, 1, i), rate)
        else:
            name, rate = f"{kind}/clip{i:03d}.mkv", 48000
            write_mkv(os.path.join(folder, name), synth(10, rate, 2, i), rate)
        rows.append(f"{name}\t{int(10 * rate)}")
    manifest = os.path.join(folder, f"{kind}.tsv")
    with open(manifest, "w") as f:
        f.write(folder + "\n" + "\n".join(rows) + "\n")
    return manifest


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
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--workers", default=None, help="comma-separated worker counts (default 0,1,2,..,cores)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    workers = [int(w) for w in args.workers.split(",")] if args.workers else \
        sorted({0, 1, 2, 4, 8, 16, cores} & set(range(cores + 1)))
    torch.set_num_threads(1)  # one core per worker, as in fairseq's dataloader
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("flac", "mkv"):
            manifest = make_set(tmp, kind, args.clips)
            cache = os.path.join(tmp, "cache")
            write_cache(MAE_AST_Dataset(manifest), kind, cache, workers=max(workers))
            for source, cache_dir in ((kind, None), (f"{kind} cached", cache)):
                for w in workers:
                    rate = throughput(manifest, w, cache=cache_dir)
                    rows.append({"format": source, "workers": w, "clips_per_s": rate,
                                 "ms_per_clip_per_core": 1000 * max(w, 1) / rate})
                    print(f"  {source:12} workers={w:<3} {rate:8.1f} clips/s", flush=True)
    env = {"machine": platform.processor() or platform.machine(), "cores": cores, "torch": torch.__version__,
           "clips": args.clips, "date": time.strftime("%Y-%m-%d")}
    print(f"\n{env['cores']} cores, torch {env['torch']}, {args.clips} clips x 10 s per format")
    print(f"{'source':14}{'workers':>8}{'clips/s':>10}{'ms/clip/core':>14}")
    for r in rows:
        print(f"{r['format']:14}{r['workers']:>8}{r['clips_per_s']:>10.1f}{r['ms_per_clip_per_core']:>14.1f}")
    path = save_results(args.out, f"data_pipeline_{cores}cores", env, rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
