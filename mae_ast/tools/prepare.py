"""``mae-ast-prepare``: write fine-tuning data folders (``{split}.tsv``, ``{split}.lbl``,
``label_descriptors.csv``) from the layouts datasets are downloaded in (each layout's command:
README, 'Fine-tuning and evaluation').

Exit code: 0 when the folders were written (missing AudioSet clips are counted, not
fatal), 1 when the source does not look like the layout, 2 for bad options. Unreadable
files are listed on stderr and left out.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..data.datadir import DEFAULT_FRACTION, SplitError, check_fractions, split_name
from ..data.labels import LabelError
from ..data.layouts import AUDIOSET_SPLITS, LAYOUTS, LayoutError, PrepareOptions, write_data_dir
from ._common import tool_parser

AUDIOSET_DEFAULT = ",".join(f"{k}={v}" for k, v in AUDIOSET_SPLITS.items())


def print_summary(rows: list[tuple], missing: int, unreadable: int) -> None:
    header = ("split", "clips", "classes", "missing", "unreadable")
    width = max(len(r[0]) for r in [header, *rows])
    for row in [header, *rows]:
        print(f"{row[0]:<{width}}  " + "  ".join(f"{v:>10}" for v in row[1:]))
    if missing:
        print(f"{missing} clip(s) named in the split CSVs have no audio file: see missing_{{split}}.txt")
    if unreadable:
        print(f"{unreadable} unreadable file(s) left out (listed on stderr)")


def _folds(text: str) -> list[int]:
    try:
        folds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fold numbers, got {text!r}") from None
    if not folds:
        raise argparse.ArgumentTypeError("no fold given")
    return folds


def _splits(text: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if not pairs or any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise argparse.ArgumentTypeError(f"expected split=file.csv,..., got {text!r}")
    return {split_name(k): v.strip() for k, v in pairs}  # a SplitError is an ArgumentTypeError


def build_parser() -> argparse.ArgumentParser:
    parser = tool_parser("mae-ast-prepare", __doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, help="data folder to write (split files an earlier run left "
                        "there are removed)")
    common.add_argument("--seed", type=int, default=0, help="seed of random splits and silence crops")
    sub = parser.add_subparsers(dest="layout", required=True, metavar="LAYOUT")

    def layout(name: str, src: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=LAYOUTS[name].__doc__)
        p.add_argument("src", metavar="SRC", help=src)
        return p

    p = layout("esc50", "the ESC-50-master folder", "ESC-50, one data folder per test fold")
    p.add_argument("--folds", type=_folds, help="test folds to write, e.g. 1,2,3,4,5 (default: every fold)")
    p = layout("speechcommands", "the Speech Commands v0.02 folder", "Speech Commands")
    p.add_argument("--variant", choices=["35", "ks1"], default="35",
                   help="35 words, or SUPERB's 12 classes (its test split is SUPERB's only with --test-set)")
    p.add_argument("--test-set", help="ks1: v0.01's speech_commands_test_set_v0.01 folder, SUPERB's KS1 test "
                   "set (default: testing_list.txt plus _silence_ crops, which is NOT SUPERB's test set)")
    p.add_argument("--silence-per-split", type=int, help="ks1: _silence_ crops per split "
                   "(default: the split's word clips / 11, so silence is ~1/12 of it)")
    p = layout("audioset", "folder with the CSVs and clips (see --csv-dir/--audio-dir)", "AudioSet")
    p.add_argument("--csv-dir", help="folder of class_labels_indices.csv and the segment CSVs; a relative "
                   "path is taken from SRC (default: SRC)")
    p.add_argument("--audio-dir", help="folder of downloaded clips, searched recursively; a relative path is "
                   "taken from SRC (default: SRC)")
    p.add_argument("--splits", type=_splits, default=_splits(AUDIOSET_DEFAULT), help=f"default: {AUDIOSET_DEFAULT}")
    for name, src in (("folders", "folder with one subfolder per class"),
                      ("csv", "CSV file with header path,labels[,split]")):
        p = layout(name, src, f"{name}: any labelled clips")
        for split in ("valid", "test"):
            p.add_argument(f"--{split}-percent", type=float,
                           help=f"share of each class for {split} (default {DEFAULT_FRACTION})")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "silence_per_split", None) is not None and args.silence_per_split < 0:
        parser.error("--silence-per-split must be >= 0")
    try:  # here, not after every audio header is read
        check_fractions(getattr(args, "valid_percent", None), getattr(args, "test_percent", None))
    except SplitError as err:
        parser.error(str(err))
    given = {k: v for k, v in vars(args).items() if k in PrepareOptions.__dataclass_fields__ and v is not None}
    opts = PrepareOptions(**given)
    try:
        kind, exists = ("file", os.path.isfile) if args.layout == "csv" else ("folder", os.path.isdir)
        if not exists(args.src):
            raise LayoutError(f"{args.src}: not a {kind} (SRC of the {args.layout} layout)")
        data_dirs = LAYOUTS[args.layout](opts)
        written = [write_data_dir(data, opts.lengths, opts.notes) for data in data_dirs]
    except (LayoutError, SplitError, LabelError) as err:
        report(opts)
        print(f"mae-ast-prepare: error: {err}", file=sys.stderr)
        return 1
    report(opts, [path for _, removed in written for path in removed])
    missing = set().union(*(ids for data in data_dirs for ids in data.missing.values()))
    print_summary([row for rows, _ in written for row in rows], len(missing), len(opts.lengths.errors))
    return 0


def report(opts: PrepareOptions, removed: list[str] = ()) -> None:
    """Notes, unreadable files and removed stale files, on stderr."""
    for note in opts.notes:
        print(note, file=sys.stderr)
    for err in opts.lengths.errors.values():
        print(f"unreadable, left out: {err}", file=sys.stderr)
    if removed:
        print(f"removed, left by an earlier run: {', '.join(removed)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
