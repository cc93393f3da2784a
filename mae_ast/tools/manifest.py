"""``mae-ast-manifest``: write train/valid/test.tsv manifests for a folder of audio.

    mae-ast-manifest /data/audio --out /data/manifests --ext flac,wav,mkv \\
        --valid-percent 0.01 --test-percent 0.01 --seed 0

Lengths are in samples at each file's own rate (the original's format), read from the
header where the format has one. Unreadable files are listed and left out.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

from tqdm import tqdm

from ..data.audio_io import AUDIO_EXTENSIONS, SOUNDFILE_EXTENSIONS, AudioError


def audio_length(path: str) -> int:
    """Length in samples at the file's own rate; raises ``AudioError`` if unreadable."""
    ext = os.path.splitext(path)[1].lower()
    if os.path.getsize(path) == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    if ext in SOUNDFILE_EXTENSIONS:
        import soundfile as sf

        try:
            return int(sf.info(path).frames)
        except Exception as err:
            raise AudioError(path, f"soundfile could not read the header ({err})") from err
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(path, "container has no audio stream")
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return int(round(stream.duration * stream.time_base * stream.rate))
            # No duration in the header: count decoded samples.
            return sum(frame.samples for frame in container.decode(stream))
    except AudioError:
        raise
    except Exception as err:
        raise AudioError(path, f"PyAV could not read it ({err})") from err


def find_audio(root: str, extensions=AUDIO_EXTENSIONS) -> list[str]:
    """Relative paths of the files under ``root`` whose extension (".flac" or "flac")
    is in ``extensions``, sorted."""
    wanted = {"." + e.lower().lstrip(".") for e in extensions}
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            if os.path.splitext(name)[1].lower() in wanted:
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


# fairseq drops a last batch smaller than this (its default); small splits can vanish.
BATCH_MULTIPLE = 8


def split_size(n: int, fraction: float) -> int:
    """Clips for a split of ``fraction``: at least one when the fraction is positive and
    a clip can be spared, so ``--valid-percent 0.01`` on a small folder never writes an
    empty valid.tsv (fairseq fails on an empty split)."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, int(round(n * fraction))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mae-ast-manifest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="folder to walk for audio")
    parser.add_argument("--out", required=True, help="folder for train/valid/test.tsv")
    parser.add_argument("--ext", default=",".join(sorted(e.lstrip(".") for e in AUDIO_EXTENSIONS)),
                        help="comma-separated extensions (default: every audio extension the loader reads)")
    parser.add_argument("--valid-percent", type=float, default=0.01, help="fraction for valid.tsv")
    parser.add_argument("--test-percent", type=float, default=0.0, help="fraction for test.tsv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        parser.error(f"{args.root}: not a folder")
    if not 0 <= args.valid_percent + args.test_percent <= 1:
        parser.error("--valid-percent + --test-percent must lie in [0, 1]")

    root = os.path.abspath(args.root)
    files = find_audio(root, {e.strip().lower().lstrip(".") for e in args.ext.split(",")})
    rows, bad = [], []
    for rel in tqdm(files, desc="reading headers", unit="file"):
        try:
            rows.append((rel, audio_length(os.path.join(root, rel))))
        except AudioError as err:
            bad.append(err)
    random.Random(args.seed).shuffle(rows)
    n_valid = split_size(len(rows), args.valid_percent)
    n_test = split_size(len(rows) - n_valid, args.test_percent * len(rows) / max(len(rows) - n_valid, 1))
    splits = {"valid": rows[:n_valid], "test": rows[n_valid : n_valid + n_test],
              "train": rows[n_valid + n_test :]}
    os.makedirs(args.out, exist_ok=True)
    for split, items in splits.items():
        if split == "test" and not items and args.test_percent == 0:
            continue
        with open(os.path.join(args.out, f"{split}.tsv"), "w") as f:
            f.write(root + "\n")
            for rel, length in sorted(items):
                f.write(f"{rel}\t{length}\n")
    for err in bad:
        print(f"unreadable, left out: {err}", file=sys.stderr)
    summary = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
    print(f"{len(files)} files found: {summary}; {len(bad)} unreadable")
    for split, items in splits.items():
        if items and len(items) < BATCH_MULTIPLE:
            print(f"warning: {split}.tsv has {len(items)} clips, fewer than fairseq's default "
                  f"dataset.required_batch_size_multiple={BATCH_MULTIPLE}: train with "
                  "dataset.required_batch_size_multiple=1 or give the split more clips", file=sys.stderr)
    if not splits["train"]:
        print("error: train.tsv is empty: no readable audio left for training", file=sys.stderr)
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
