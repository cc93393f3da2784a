"""``mae-ast-cache``: precompute the fbank of every clip into a memory-mapped cache; train with
``task.fbank_cache=CACHE_DIR`` (README, 'Features, tools, SUPERB'). ``--min-sample-size`` /
``--max-keep-size`` make a smaller cache that only a task with the same or stricter length
filters can use.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from ..data.features import FeatureSpec
from ..data.fbank_cache import write_cache
from ..data.mae_ast_dataset import MAE_AST_Dataset
from ._common import check_output, check_splits, split_list, tool_parser


def check_inputs_and_output(parser: argparse.ArgumentParser, data: str, splits: list[str], out: str) -> None:
    """Before any clip is read (a refused run must not leave a half-written cache): every
    asked split's manifest exists, and ``out`` is a folder that can be made and written."""
    check_splits(parser, data, splits)
    check_output(parser, out, "--out", folder=True)
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        parser.error(f"--out {out}: cannot write there ({err.strerror}); choose another folder")


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("mae-ast-cache", __doc__)
    parser.add_argument("data", help="folder holding the {split}.tsv manifests")
    parser.add_argument("--out", required=True, help="cache folder")
    parser.add_argument("--splits", type=split_list, default="train,valid",
                        help="comma-separated, each of which must exist (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--min-sample-size", type=int, default=None,
                        help="leave out entries shorter than this (default: cache every entry)")
    parser.add_argument("--max-keep-size", type=int, default=None,
                        help="leave out entries longer than this (default: cache every entry)")
    parser.add_argument("--feature-dim", type=int, default=128, help="as task.feature_dim (mel bins)")
    parser.add_argument("--deltas", action="store_true", help="as task.deltas=true")
    parser.add_argument("--sample-rate", type=int, default=16000, help="as task.sample_rate")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                        help="float16 halves the size (log-mel values keep ~3 significant digits)")
    args = parser.parse_args(argv)
    check_inputs_and_output(parser, args.data, args.splits, args.out)

    spec = FeatureSpec(sample_rate=args.sample_rate, num_mel_bins=args.feature_dim, deltas=args.deltas)
    bad = 0
    for split in args.splits:
        dataset = MAE_AST_Dataset(os.path.join(args.data, f"{split}.tsv"), min_keep_sample_size=args.min_sample_size,
                                  max_keep_sample_size=args.max_keep_size, feature_spec=spec)
        meta = write_cache(dataset, split, args.out, workers=args.workers, dtype=args.dtype)
        for path, reason in meta["skipped"].items():
            print(f"left out: {path}: {reason}", file=sys.stderr)
        bad += len(meta["skipped"])
        size = meta["frames"] * meta["width"] * (2 if args.dtype == "float16" else 4)
        print(f"{split}: {meta['clips'] - len(meta['skipped'])} of {meta['clips']} clips cached, "
              f"{meta['frames']} frames, {size / 1e6:.1f} MB")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
