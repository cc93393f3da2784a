"""``mae-ast-manifest``: write train/valid/test.tsv manifests for a folder of audio.
Format and exit code: README, 'Your own data'.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

from tqdm import tqdm

from ..data.audio_io import AUDIO_EXTENSIONS, AudioError
from ..data.datadir import (SplitError, audio_length, check_fractions, find_audio, remove_stale, split_indices,
                            write_split)
from ._common import pool_map, tool_parser

# fairseq drops a last batch smaller than this (its default); small splits can vanish.
BATCH_MULTIPLE = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = tool_parser("mae-ast-manifest", __doc__)
    parser.add_argument("root", help="folder to walk for audio")
    parser.add_argument("--out", required=True, help="folder for train/valid/test.tsv (split files of an "
                        "earlier run that this one does not write are removed)")
    parser.add_argument("--ext", default=",".join(sorted(e.lstrip(".") for e in AUDIO_EXTENSIONS)),
                        help="comma-separated extensions (default: every audio extension the loader reads)")
    parser.add_argument("--valid-percent", type=float, default=0.01, help="fraction for valid.tsv")
    parser.add_argument("--test-percent", type=float, default=0.0, help="fraction for test.tsv (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument("--workers", type=int, default=1, help="processes reading headers (AudioSet's 2 M files: "
                        "one per core)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        parser.error(f"{args.root}: not a folder")
    try:
        check_fractions(args.valid_percent, args.test_percent)
    except SplitError as err:
        parser.error(str(err))
    return args


def _length_or_reason(item: tuple[str, str]) -> tuple[str, int | tuple[str, str]]:
    root, rel = item
    try:
        return rel, audio_length(os.path.join(root, rel))
    except AudioError as err:  # (path, reason): AudioError itself does not unpickle
        return rel, (err.path, err.reason)


def read_lengths(root: str, files: list[str], workers: int = 1) -> Iterator[tuple[str, int | AudioError]]:
    """(file, length or its ``AudioError``) of each file, in order; headers read in ``workers`` processes."""
    for rel, length in pool_map(_length_or_reason, [(root, rel) for rel in files], workers, chunksize=64):
        yield rel, (AudioError(*length) if isinstance(length, tuple) else length)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = os.path.abspath(args.root)
    files = find_audio(root, {e.strip().lower().lstrip(".") for e in args.ext.split(",")})
    rows, bad = [], []
    for rel, length in tqdm(read_lengths(root, files, args.workers), total=len(files), desc="reading headers",
                            unit="file"):
        if isinstance(length, AudioError):
            bad.append(length)
        else:
            rows.append((rel, length))
    for err in bad:
        print(f"unreadable, left out: {err}", file=sys.stderr)
    try:
        splits = split_indices([rel for rel, _ in rows], args.valid_percent, args.test_percent, args.seed)
    except SplitError as err:
        print(f"mae-ast-manifest: error: {err}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    removed = remove_stale(args.out, splits)
    for split, idx in splits.items():
        removed += write_split(args.out, split, root, [os.path.join(root, rows[i][0]) for i in idx],
                               [rows[i][1] for i in idx])
    if removed:
        print(f"removed, left by an earlier run: {', '.join(removed)}", file=sys.stderr)
    print(f"{len(files)} files found: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
          + f"; {len(bad)} unreadable")
    for split, idx in splits.items():
        if len(idx) < BATCH_MULTIPLE:
            print(f"warning: {split}.tsv has {len(idx)} clips, fewer than fairseq's default "
                  f"dataset.required_batch_size_multiple={BATCH_MULTIPLE}: train with "
                  "dataset.required_batch_size_multiple=1 or give the split more clips", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
