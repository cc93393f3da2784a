"""Where an Opus mkv clip's decode time goes, per core, interleaved rounds.

    python bench/opus_decode.py [--clips 6] [--rounds 15]

Variants on the same synthetic 10 s 48 kHz stereo clips: the original's decode (PyAV
``to_ndarray`` per frame, ``torch`` mean), ours through a per-frame ``AudioResampler``
(``audio_io`` two versions ago), ours with each float frame converted in numpy (one
version ago), ours now (each frame's planes copied into one numpy buffer), FFmpeg's
Opus decoder alone (frames not converted) and demuxing alone. Ratios are paired per round
against the original (``paired.py``: ``noise`` when the IQR holds 1).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from data_pipeline import make_set
from paired import describe, paired_ratio, quartiles
from mae_ast.data.audio_io import _read_pyav, mix_to_mono


def original(path: str) -> torch.Tensor:
    import av

    with av.open(path, metadata_errors="ignore") as container:
        decode = container.decode(audio=0)
        frames = [next(decode).to_ndarray()] + [f.to_ndarray() for f in decode]
        return torch.as_tensor(np.concatenate(frames, 1)).mean(dim=0)


def with_resampler(path: str) -> np.ndarray:
    import av

    with av.open(path, metadata_errors="ignore") as container:
        to_float = av.AudioResampler(format="fltp")
        chunks = [c.to_ndarray() for f in container.decode(audio=0) for c in to_float.resample(f)]
        chunks += [c.to_ndarray() for c in to_float.resample(None)]
    return mix_to_mono(np.concatenate(chunks, axis=1))


def per_frame_numpy(path: str) -> np.ndarray:
    import av

    with av.open(path, metadata_errors="ignore") as container:
        chunks = [f.to_ndarray() for f in container.decode(audio=0)]
    return mix_to_mono(np.concatenate(chunks, axis=1))


def decode_only(path: str) -> None:
    import av

    with av.open(path, metadata_errors="ignore") as container:
        for _ in container.decode(audio=0):
            pass


def demux_only(path: str) -> None:
    import av

    with av.open(path, metadata_errors="ignore") as container:
        for _ in container.demux(audio=0):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = {"original decode + mix": original, "ours, per-frame AudioResampler": with_resampler,
                "ours, frames to numpy one by one": per_frame_numpy,
                "ours, one buffer per run (now)": lambda p: _read_pyav(p)[0],
                "Opus decode only": decode_only, "demux only": demux_only}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_set(tmp, "mkv", args.clips)
        with open(manifest) as f:
            paths = [os.path.join(tmp, line.split("\t")[0]) for line in f.read().splitlines()[1:]]
        assert np.array_equal(with_resampler(paths[0]), _read_pyav(paths[0])[0])
        assert np.array_equal(per_frame_numpy(paths[0]), _read_pyav(paths[0])[0])
        ms = {v: [] for v in variants}
        for r in range(args.rounds):
            spent = dict.fromkeys(variants, 0.0)
            for path in paths:
                for v in (list(variants) if r % 2 == 0 else list(reversed(variants))):
                    t0 = time.perf_counter()
                    variants[v](path)
                    spent[v] += time.perf_counter() - t0
            for v in variants:
                ms[v].append(1000 * spent[v] / len(paths))
    base = ms["original decode + mix"]
    for v in variants:
        q1, med, q3 = quartiles(ms[v])
        versus = "-" if ms[v] is base else describe(paired_ratio(base, ms[v]))
        print(f"{v:34}{med:8.1f} ms ({q1:.1f}-{q3:.1f})   original / this: {versus}")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
