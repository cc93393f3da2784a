"""Data-side memory and times against manifest size (issue 26), in three parts.

    PYTHONPATH=. python bench/data_scale.py [--sizes 10000,100000,500000,2000000] [--workers 2]
        [--layouts packed,lists] [--audio-clips 48] [--demo-mkv 300] [--out bench/results]

1. Per size, a synthetic AudioSet-like split (paths only: ``part07/Y{11-char id}_30.000.mkv``
   of 10 s at 48 kHz, 527 classes, 1-4 labels per clip, a ``.lbl`` naming each clip by its
   YouTube id, shuffled) is written to a temporary folder; then, in a fresh process per
   (size, layout), so that no measurement sees another's pages:
   * rank memory: the USS (``Private_*`` of ``/proc/self/smaps_rollup``) the
     ``MAE_AST_Dataset`` adds to the process;
   * worker growth: a torch DataLoader forks ``--workers`` workers that read every clip's
     path, length and line (the dataset's hot path without the decode) for one epoch;
     each worker's USS and PSS is read from ``/proc/PID/smaps_rollup`` after its first
     batch and at the epoch's end;
   * batching: ``ordered_indices`` + ``batch_by_size`` (max_tokens 1.4 M samples, multiple
     8), vectorised (``num_tokens_vec``) and per clip (fairseq's ``num_tokens`` path);
   * labels: ``read_label_rows`` time, its peak (tracemalloc, a second call) and what it
     keeps; ``sample_weights`` time. Times as CPU seconds of the process (``process_time``,
     what to trust on a shared machine) beside wall seconds, with the load average.
   ``--layouts lists`` turns the packed storage back into Python lists (the layout before
   issue 26) in the same process, as the baseline.
2. The manifest building rate on real audio (``--audio-clips`` 10 s clips per format:
   48 kHz stereo Opus in Matroska as AudioSet is downloaded, 16 kHz flac as LibriSpeech;
   and ``--demo-mkv`` copies of ``data/demo/audio``'s .mkv clips), ``mae-ast-manifest``
   serial and with ``--tool-workers``, and the ``mae-ast-validate`` rate, per wall and per
   CPU second (this process's and its workers'). The table extrapolates 2 M clips on 16
   cores from clips per CPU second (16 cores kept busy, as ``--workers 16`` does).
   ``--sizes ''`` runs part 2 alone.
3. A table (stdout) and JSON under ``--out``, with a node of 8 ranks x 16 workers
   extrapolated from the largest size.

Memory figures are exact; times are rough on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_io import save_results  # noqa: E402

CLASSES = 527
SAMPLES = 480000  # 10 s at 48 kHz


def smaps(pid: int | str = "self") -> dict[str, int]:
    """USS and PSS in bytes from /proc/PID/smaps_rollup."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return {"uss": fields["Private_Clean"] + fields["Private_Dirty"], "pss": fields["Pss"]}


def youtube_id(i: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(alphabet[(i >> (6 * k)) & 63] for k in range(11))


def write_split(folder: str, n: int, seed: int = 0) -> None:
    """train.tsv, train.lbl (YouTube ids, shuffled) and label_descriptors.csv."""
    rng = np.random.default_rng(seed)
    with open(os.path.join(folder, "label_descriptors.csv"), "w") as f:
        f.write("index,mid,display_name\n" + "".join(f"{c},/m/x{c:03d},class {c}\n" for c in range(CLASSES)))
    with open(os.path.join(folder, "train.tsv"), "w") as f:
        f.write(folder + "\n")
        for start in range(0, n, 100_000):
            f.write("".join(f"unbalanced_train_segments/part{i % 41:02d}/Y{youtube_id(i)}_30.000.mkv\t{SAMPLES}\n"
                            for i in range(start, min(n, start + 100_000))))
    # Zipf-like class frequencies, as AudioSet's (Speech and Music in ~half the clips)
    p = 1.0 / np.arange(1, CLASSES + 1)
    p /= p.sum()
    order = rng.permutation(n)
    mids = [f"/m/x{c:03d}" for c in range(CLASSES)]
    with open(os.path.join(folder, "train.lbl"), "w") as f:
        for start in range(0, n, 100_000):
            part = order[start : start + 100_000]
            ends = np.cumsum(rng.integers(1, 5, len(part)))
            drawn = np.split(rng.choice(CLASSES, int(ends[-1]), p=p), ends[:-1])
            f.write("".join(f"{youtube_id(int(i))}\t" + ",".join(mids[c] for c in dict.fromkeys(row.tolist())) + "\n"
                            for i, row in zip(part, drawn)))


class _HotPath:
    """What ``__getitem__`` reads of the dataset before decoding: path, length, line."""

    def __init__(self, ds) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> int:
        ds = self.ds
        return len(ds.paths[i]) + int(ds.sizes[i]) + int(ds.lines[i])


def _collate_pid(items: list[int]) -> tuple[int, int]:
    return os.getpid(), sum(items)


_START_DIR = ""  # set by measure_workers; its forked workers inherit it


def _record_start(_worker_id: int) -> None:
    """Each worker's memory as forked, before it reads a clip."""
    with open(os.path.join(_START_DIR, str(os.getpid())), "w") as f:
        json.dump(smaps(), f)


def measure_workers(ds, workers: int, batch: int = 1000) -> list[dict]:
    import torch

    global _START_DIR
    _START_DIR = tempfile.mkdtemp(prefix="data_scale_")  # made here, not at import: importers leave nothing
    try:
        loader = torch.utils.data.DataLoader(
            _HotPath(ds), batch_size=batch, num_workers=workers, collate_fn=_collate_pid, persistent_workers=True,
            prefetch_factor=2, worker_init_fn=_record_start)
        pids = {pid for pid, _ in loader}
        # persistent workers stay alive after the epoch: read them before the loader goes
        out = []
        for pid in pids:
            with open(os.path.join(_START_DIR, str(pid))) as f:
                start = json.load(f)
            end = smaps(pid)
            out.append({"pid": pid, "uss_start": start["uss"], "uss_end": end["uss"], "pss_end": end["pss"],
                        "growth": end["uss"] - start["uss"]})
        del loader
    finally:
        shutil.rmtree(_START_DIR, ignore_errors=True)
    return out


def to_lists(ds) -> None:
    """The storage before issue 26: Python lists of str and int."""
    ds.paths, ds.entries, ds.lines = list(ds.paths), list(ds.entries), ds.lines.tolist()


def measure_one(folder: str, layout: str, workers: int) -> dict:
    """Everything of part 1 for one split, in this (fresh) process."""
    import gc
    import tracemalloc

    from fairseq.data import data_utils

    from mae_ast.data import MAE_AST_Dataset
    from mae_ast.data.labels import read_label_descriptors, read_label_rows
    from mae_ast.data.sampling import sample_weights

    manifest = os.path.join(folder, "train.tsv")
    gc.collect()
    before = smaps()["uss"]
    t = time.perf_counter()
    ds = MAE_AST_Dataset(manifest, max_sample_size=250000)
    if layout == "lists":
        to_lists(ds)
    read_s = time.perf_counter() - t
    gc.collect()
    row = {"clips": len(ds), "layout": layout, "manifest_read_s": read_s, "rank_bytes": smaps()["uss"] - before}
    row["workers"] = measure_workers(ds, workers)
    row["worker_growth_max"] = max(w["growth"] for w in row["workers"])

    np.random.seed(1)
    t = time.perf_counter()
    indices = ds.ordered_indices()
    batches = ds.batch_by_size(indices, max_tokens=1_400_000, required_batch_size_multiple=8)
    row["batching_s"] = time.perf_counter() - t
    t = time.perf_counter()
    slow = data_utils.batch_by_size(indices, ds.num_tokens, max_tokens=1_400_000, required_batch_size_multiple=8)
    row["batching_per_clip_s"] = time.perf_counter() - t
    assert [b.tolist() for b in slow[:50]] == [b.tolist() for b in batches[:50]] and len(slow) == len(batches)
    if layout == "packed":
        label_set = read_label_descriptors(os.path.join(folder, "label_descriptors.csv"))
        lbl = os.path.join(folder, "train.lbl")
        t, cpu = time.perf_counter(), time.process_time()
        rows = read_label_rows(lbl, label_set, ds.entries, True, manifest)
        row["labels_s"], row["labels_cpu_s"] = time.perf_counter() - t, time.process_time() - cpu
        row["labels_kept_bytes"] = rows.offsets.nbytes + rows.indices.nbytes
        t, cpu = time.perf_counter(), time.process_time()
        sample_weights(rows, CLASSES)
        row["sample_weights_s"], row["sample_weights_cpu_s"] = time.perf_counter() - t, time.process_time() - cpu
        row["load_average"] = os.getloadavg()[0]
        del rows
        gc.collect()
        tracemalloc.start()
        read_label_rows(lbl, label_set, ds.entries, True, manifest)
        row["labels_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return row


def measure_sizes(sizes: list[int], layouts: list[str], workers: int) -> list[dict]:
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as folder:
            t = time.perf_counter()
            write_split(folder, n)
            print(f"{n} clips written in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            for layout in layouts:
                proc = subprocess.run([sys.executable, __file__, "--one", folder, "--layout", layout,
                                       "--workers", str(workers)], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr[-3000:])
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "workers"}), file=sys.stderr)
    return rows


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (a Pool's workers, once closed)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def copy_demo_mkv(folder: str, copies: int) -> None:
    """``copies`` files cycling through the demo set's .mkv clips, named as AudioSet's."""
    demo = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "demo", "audio")
    sources = sorted(os.path.join(demo, f) for f in os.listdir(demo) if f.endswith(".mkv"))
    for i in range(copies):
        shutil.copyfile(sources[i % len(sources)], os.path.join(folder, f"Y{youtube_id(i)}_30.000.mkv"))


def measure_tools(clips: int, workers: int, demo_copies: int) -> list[dict]:
    """Part 2: mae-ast-manifest and mae-ast-validate on real 10 s clips."""
    import soundfile as sf

    from tests.audio_files import encode_audio
    from mae_ast.tools import manifest as manifest_tool
    from mae_ast.tools.validate import validate_split

    out = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for fmt in ("demo mkv", "mkv", "flac"):
            audio = os.path.join(folder, fmt.replace(" ", "_"))
            os.makedirs(audio)
            if fmt == "demo mkv":  # the repository's real AudioSet-style clips, copied
                copy_demo_mkv(audio, demo_copies)
            for i in range(clips if fmt != "demo mkv" else 0):
                if fmt == "mkv":
                    wav = (0.1 * rng.standard_normal((SAMPLES, 2))).astype(np.float32)
                    encode_audio(os.path.join(audio, f"Y{youtube_id(i)}_30.000.mkv"), wav, 48000)
                else:
                    sf.write(os.path.join(audio, f"{i:05d}.flac"), (0.1 * rng.standard_normal(160000)), 16000)
            n = len(os.listdir(audio))
            for w in sorted({1, workers}):
                args = [audio, "--out", os.path.join(folder, f"m_{fmt}_{w}"), "--ext", fmt.split()[-1],
                        "--valid-percent", "0"]
                if w > 1:
                    args += ["--workers", str(w)]
                t, cpu = time.perf_counter(), cpu_seconds()
                rc = manifest_tool.main(args)
                elapsed, cpu = time.perf_counter() - t, cpu_seconds() - cpu
                out.append({"tool": "mae-ast-manifest", "format": fmt, "workers": w, "clips": n, "rc": rc,
                            "clips_per_s": n / elapsed, "clips_per_cpu_s": n / cpu, "load_average": os.getloadavg()[0]})
                print(json.dumps(out[-1]), file=sys.stderr)
            t, cpu = time.perf_counter(), cpu_seconds()
            total, reasons, _ = validate_split(os.path.join(folder, f"m_{fmt}_1", "train.tsv"), 1)
            out.append({"tool": "mae-ast-validate", "format": fmt, "workers": 1, "clips": total,
                        "bad": sum(reasons.values()), "clips_per_s": total / (time.perf_counter() - t),
                        "clips_per_cpu_s": total / (cpu_seconds() - cpu)})
            print(json.dumps(out[-1]), file=sys.stderr)
    return out


def node_estimate(row: dict, ranks: int = 8, workers: int = 16) -> dict:
    """Data-side RAM of a node: each rank's dataset and labels, and each worker's growth
    (an upper bound: the worker's own copied pages, as measured over one epoch)."""
    labels = row.get("labels_kept_bytes", 0)
    per_rank = row["rank_bytes"] + labels
    total = ranks * (per_rank + workers * row["worker_growth_max"])
    return {"clips": row["clips"], "layout": row["layout"], "ranks": ranks, "workers_per_rank": workers,
            "per_rank_bytes": per_rank, "node_bytes": total}


def mb(x: float) -> str:
    return f"{x / 1e6:.1f}"


def table(rows: list[dict], tools: list[dict], nodes: list[dict]) -> str:
    lines = ["| clips | layout | rank MB | worker growth MB (max) | batching s (vec / per clip) | "
             "labels s (CPU / wall) | labels peak MB | labels kept MB | sample_weights s (CPU / wall) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        labels = (f"{r['labels_cpu_s']:.2f} / {r['labels_s']:.2f} | {mb(r['labels_peak_bytes'])} | "
                  f"{mb(r['labels_kept_bytes'])} | {r['sample_weights_cpu_s']:.2f} / {r['sample_weights_s']:.2f}"
                  ) if "labels_s" in r else "- | - | - | -"
        lines.append(f"| {r['clips']:,} | {r['layout']} | {mb(r['rank_bytes'])} | {mb(r['worker_growth_max'])} | "
                     f"{r['batching_s']:.2f} / {r['batching_per_clip_s']:.2f} | {labels} |")
    if tools:
        lines += ["", "| tool | format | workers | clips | clips/s wall | clips per CPU s | "
                  "2 M clips on 16 cores, min (from CPU s) |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {t['tool']} | {t['format']} | {t['workers']} | {t['clips']} | {t['clips_per_s']:.1f} | "
                  f"{t['clips_per_cpu_s']:.1f} | {2e6 / (t['clips_per_cpu_s'] * 16) / 60:.1f} |" for t in tools]
    if nodes:
        lines += ["", "| node (8 ranks x 16 workers) | layout | per rank MB | node GB |", "|---|---|---|---|"]
        lines += [f"| {n['clips']:,} clips | {n['layout']} | {mb(n['per_rank_bytes'])} | {n['node_bytes'] / 1e9:.2f} |"
                  for n in nodes]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,500000,2000000")
    parser.add_argument("--layouts", default="packed,lists", help="packed (ours), lists (before issue 26)")
    parser.add_argument("--workers", type=int, default=2, help="dataloader workers forked per measurement")
    parser.add_argument("--audio-clips", type=int, default=48, help="real clips per format for part 2 (0: skip)")
    parser.add_argument("--tool-workers", type=int, default=2)
    parser.add_argument("--demo-mkv", type=int, default=300, help="copies of data/demo/audio's .mkv clips for "
                        "part 2's manifest rate")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--name", default="data_scale")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--layout", default="packed", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.layout, args.workers)))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = measure_sizes(sizes, args.layouts.split(","), args.workers)
    tools = measure_tools(args.audio_clips, args.tool_workers, args.demo_mkv) if args.audio_clips else []
    largest = max((r["clips"] for r in rows), default=None)
    nodes = [node_estimate(r) for r in rows if r["clips"] == largest]
    for n in nodes:  # the labels are read (and kept) in the lists layout too: count ours there
        if n["layout"] == "lists":
            n["note"] = "labels not counted"
    print(table(rows, tools, nodes))
    env = {"python": platform.python_version(), "cpus": os.cpu_count(), "workers": args.workers,
           "load_average": os.getloadavg(), "nodes": nodes, "tools": tools}
    print(save_results(args.out, args.name, env, rows))


if __name__ == "__main__":
    main()
