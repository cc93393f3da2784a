"""Provenance record at AudioSet scale: a synthetic 2 M-clip train manifest (and a 20 k
valid one) with ``{split}.keys.npz`` sidecars, the record built from them, stored as a
checkpoint does (``provenance.to_state``: the keys file), and a 20 k-clip test split
checked against it (``provenance.overlap_report``, keys given as a sidecar would).

    python bench/provenance_scale.py [--clips 2000000] [--test 20000] [--out bench/results]

The clips need not exist: a sidecar records size and mtime -1 for a missing file, which is
what ``manifest_keys`` then finds, so the sidecar counts as current (the ``stat`` of every
clip is still paid, as on real data). Keys are random 64-bit values, as hashes are.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.results_io import save_results  # noqa: E402
from mae_ast import provenance  # noqa: E402
from mae_ast.data import identity  # noqa: E402


def write_split(folder: str, split: str, n: int, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
    """``{split}.tsv`` of ``n`` synthetic clips and its sidecar of random keys."""
    os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
    manifest = os.path.join(folder, f"{split}.tsv")
    with open(manifest, "w") as f:
        f.write("audio\n")
        f.writelines(f"{split}/{i:07d}.flac\t160000\n" for i in range(n))
    pk, ck = (rng.integers(1, 2**63, size=n, dtype=np.int64).view(np.uint64) for _ in range(2))
    minus = np.full(n, -1, np.int64)
    stamp = identity.Stamp.of(manifest, [])  # the manifest's text and root, as write_sidecar stamps them
    np.savez(identity.sidecar_path(manifest), path_keys=pk, content_keys=ck, sizes=minus, mtimes=minus,
             manifest_key=np.uint64(stamp.manifest_key), root=np.str_(stamp.root))
    return manifest, pk, ck


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=2_000_000, help="train clips (default: 2 M, AudioSet)")
    p.add_argument("--valid", type=int, default=20_000, help="valid clips (default: 20 k)")
    p.add_argument("--test", type=int, default=20_000, help="clips of the split checked (default: 20 k)")
    p.add_argument("--leaked", type=int, default=100, help="test clips that are train clips (default: 100)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data, save_dir = os.path.join(tmp, "data"), os.path.join(tmp, "run")
        os.makedirs(save_dir)
        train, tpk, tck = write_split(data, "train", args.clips, rng)
        write_split(data, "valid", args.valid, rng)

        t0, c0 = time.perf_counter(), time.process_time()
        record = provenance.build_record("finetuning", data, {"train": (train, None),
                                                              "valid": (os.path.join(data, "valid.tsv"), None)},
                                         "train", ["valid"])
        build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        state = provenance.to_state(record, save_dir)
        store_s = time.perf_counter() - t0
        keys_file_mb = os.path.getsize(state["keys_file"]) / 1e6 if "keys_file" in state else 0.0  # inline
        ckpt = os.path.join(save_dir, "checkpoint_last.pt")
        torch.save({"cfg": {}, "model": {}, "task_state": {"provenance": state}}, ckpt)
        in_checkpoint_kb = os.path.getsize(ckpt) / 1e3

        # a test split: fresh clips plus ``leaked`` train clips (same content under other names)
        pk = rng.integers(1, 2**63, size=args.test, dtype=np.int64).view(np.uint64)
        ck = rng.integers(1, 2**63, size=args.test, dtype=np.int64).view(np.uint64)
        ck[: args.leaked] = tck[rng.choice(args.clips, args.leaked, replace=False)]
        checkpoint = torch.load(ckpt, weights_only=True)
        t0, c0 = time.perf_counter(), time.process_time()
        report = provenance.overlap_report(checkpoint, ckpt, [""] * args.test, keys=(pk, ck))
        check_s, check_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        assert report["training"] == args.leaked, report["training"]
    rows = [{"clips": args.clips, "valid_clips": args.valid, "test_clips": args.test,
             "keys_file_MB": round(keys_file_mb, 2), "task_state_in_checkpoint_kB": round(in_checkpoint_kb, 1),
             "build_record_s": round(build_s, 2), "build_record_cpu_s": round(build_cpu_s, 2),
             "store_record_s": round(store_s, 2), "check_test_split_s": round(check_s, 3),
             "check_test_split_cpu_s": round(check_cpu_s, 3), "leaked_found": report["training"]}]
    env = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
           "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}
    path = save_results(args.out, f"provenance_scale_{args.clips}", env, rows)
    width = max(len(k) for k in rows[0])
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows[0].items()))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
