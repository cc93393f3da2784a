"""``mae-ast-prepare``: write fine-tuning data folders (``{split}.tsv``, ``{split}.lbl``,
``label_descriptors.csv``) from the layouts datasets are downloaded in.

    mae-ast-prepare esc50 ESC-50-master --out data/esc50 [--folds 1,2,3,4,5]
    mae-ast-prepare speechcommands speech_commands_v0.02 --out data/sc [--variant ks1]
    mae-ast-prepare audioset AUDIOSET_DIR --out data/as [--csv-dir D] [--audio-dir D] [--splits ...]
    mae-ast-prepare folders CLASS_FOLDERS --out data/x [--valid-percent 0.1 --test-percent 0.1 --seed 0]
    mae-ast-prepare csv clips.csv --out data/x [--valid-percent ... --test-percent ... --seed 0]

Manifest lengths are in samples at each file's own rate, read from the header. Unreadable
files are listed on stderr and left out (with their label lines). Exit code: 0 when the
folders were written (missing AudioSet clips are counted, not fatal), 1 when the source
does not look like the layout, 2 for bad options.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..data.audio_io import AudioError, read_audio
from ..data.datadir import (
    SplitError, audio_length, check_disjoint, remove_stale, split_indices, split_name, write_split,
)
from ..data.datadir import find_audio as find_relative_audio
from ..data.labels import (
    LabelError, LabelSet, class_order, default_mids, read_label_descriptors, write_label_descriptors,
)

KS1_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
KS1_CLASSES = KS1_WORDS + ["_unknown_", "_silence_"]  # SUPERB's order
AUDIOSET_SPLITS = "train=balanced_train_segments.csv,valid=eval_segments.csv,test=eval_segments.csv"


class LayoutError(RuntimeError):
    """The source folder is not the layout asked for; the message says what was expected."""


@dataclass
class Clip:
    path: str  # absolute
    labels: list[int]


@dataclass
class DataDir:
    """One output folder: its classes and the clips of each split."""

    out: str
    root: str  # manifest root: clips under it are written relative to it
    names: list[str]
    splits: dict[str, list[Clip]]
    mids: list[str] | None = None
    missing: dict[str, list[str]] = field(default_factory=dict)  # split -> ids without a file
    tag: str = ""  # prefix of its rows in the summary ("fold1")


# ---------------------------------------------------------------- writing


class Lengths:
    """Header lengths, read once per file even when several folders list it (ESC-50 folds)."""

    def __init__(self) -> None:
        self.known: dict[str, int] = {}
        self.errors: dict[str, AudioError] = {}

    def get(self, path: str) -> int | None:
        if path not in self.known and path not in self.errors:
            try:
                self.known[path] = audio_length(path)
            except AudioError as err:
                self.errors[path] = err
                print(f"unreadable, left out: {err}", file=sys.stderr)
        return self.known.get(path)


def write_data_dir(data: DataDir, lengths: Lengths) -> list[tuple]:
    """Write the folder (removing split files an earlier run left there); returns summary
    rows (split, clips, classes, missing, unreadable). Label lines name their clip."""
    check_disjoint({s: [c.path for c in clips] for s, clips in data.splits.items()}, data.out)
    os.makedirs(data.out, exist_ok=True)
    removed = remove_stale(data.out, data.splits)
    if removed:
        print(f"removed from {data.out}, left by an earlier run: {', '.join(removed)}", file=sys.stderr)
    mids = data.mids or default_mids(data.names)
    write_label_descriptors(os.path.join(data.out, "label_descriptors.csv"), data.names, mids)
    label_set = LabelSet(data.names, mids, os.path.join(data.out, "label_descriptors.csv"))
    rows = []
    for split, clips in data.splits.items():
        kept = [c for c in tqdm(clips, desc=f"{split}: reading headers", unit="file", disable=None)
                if lengths.get(c.path) is not None]
        write_split(data.out, split, data.root, [c.path for c in kept], [lengths.get(c.path) for c in kept],
                    [c.labels for c in kept], label_set)
        present = len({i for clip in kept for i in clip.labels})
        name = f"{data.tag}/{split}" if data.tag else split
        rows.append((name, len(kept), present, len(data.missing.get(split, [])), len(clips) - len(kept)))
    for split, ids in data.missing.items():
        with open(os.path.join(data.out, f"missing_{split}.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{i}\n" for i in ids)
    return rows


def print_summary(rows: list[tuple], missing: int, unreadable: int) -> None:
    header = ("split", "clips", "classes", "missing", "unreadable")
    width = max([len(header[0])] + [len(r[0]) for r in rows])
    print(f"{header[0]:<{width}}  " + "  ".join(f"{h:>10}" for h in header[1:]))
    for row in rows:
        print(f"{row[0]:<{width}}  " + "  ".join(f"{v:>10}" for v in row[1:]))
    if missing:
        print(f"{missing} clip(s) named in the split CSVs have no audio file: see missing_{{split}}.txt")
    if unreadable:
        print(f"{unreadable} unreadable file(s) left out (listed on stderr)")


# ---------------------------------------------------------------- shared helpers


def find_audio(folder: str) -> list[str]:
    """Absolute paths of the audio files under ``folder``, sorted (the manifest tool's walk)."""
    return [os.path.abspath(os.path.join(folder, rel)) for rel in find_relative_audio(folder)]


def split_by_class(clips: list[Clip], valid: float, test: float, seed: int) -> dict[str, list[Clip]]:
    """The data layer's split, stratified on each clip's first label."""
    try:
        parts = split_indices([c.path for c in clips], valid, test, seed, [c.labels[0] for c in clips])
    except SplitError as err:
        raise LayoutError(str(err)) from None
    return {split: [clips[i] for i in idx] for split, idx in parts.items()}


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == os.path.abspath(folder)


def _require(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise LayoutError(f"{path} not found: {what}")
    return path


# ---------------------------------------------------------------- esc50


def prepare_esc50(args: argparse.Namespace) -> list[DataDir]:
    """One folder per held-out fold k: train = the other folds, valid = test = fold k (as SSAST)."""
    meta = _require(os.path.join(args.src, "meta", "esc50.csv"),
                    "expected the ESC-50-master folder, holding meta/esc50.csv and audio/")
    audio = os.path.abspath(_require(os.path.join(args.src, "audio"), "expected ESC-50-master/audio/"))
    rows = _esc50_rows(meta)
    names = _esc50_names(meta, rows)
    present = sorted({fold for _, fold, _, _ in rows})
    folds = args.folds or present
    if set(folds) - set(present):
        raise LayoutError(f"{meta}: no clips in fold(s) {sorted(set(folds) - set(present))}; its folds are {present}")
    dirs = []
    for k in folds:
        held_out = [Clip(os.path.join(audio, f), [t]) for f, fold, t, _ in rows if fold == k]
        train = [Clip(os.path.join(audio, f), [t]) for f, fold, t, _ in rows if fold != k]
        splits = {"train": train, "valid": held_out, "test": held_out}
        dirs.append(DataDir(os.path.join(args.out, f"fold{k}"), audio, names, splits, tag=f"fold{k}"))
    return dirs


def _esc50_rows(meta: str) -> list[tuple[str, int, int, str]]:
    """(filename, fold, target, category) of each row of meta/esc50.csv."""
    with open(meta, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        need = {"filename", "fold", "target", "category"}
        if not need <= set(reader.fieldnames or []):
            raise LayoutError(f"{meta}:1: expected columns {sorted(need)}, got {reader.fieldnames}")
        rows = []
        for row in reader:
            fold, target = row["fold"].strip(), row["target"].strip()
            if not (fold.isdigit() and target.isdigit()):
                raise LayoutError(f"{meta}:{reader.line_num}: fold {fold!r} and target {target!r} must be integers")
            rows.append((row["filename"].strip(), int(fold), int(target), row["category"].strip()))
    if not rows:
        raise LayoutError(f"{meta}: no clips listed")
    return rows


def _esc50_names(meta: str, rows: list[tuple[str, int, int, str]]) -> list[str]:
    """Class names from ``category`` by ``target``, which must cover 0..C-1."""
    names: dict[int, str] = {}
    for filename, _, target, category in rows:
        if names.setdefault(target, category) != category:
            raise LayoutError(f"{meta}: target {target} is {names[target]!r} and {category!r} ({filename})")
    absent = sorted(set(range(max(names) + 1)) - set(names))
    if absent:
        raise LayoutError(f"{meta}: targets must be 0..{max(names)}; no clip has target {absent}")
    return [names[t] for t in range(len(names))]


# ---------------------------------------------------------------- speech commands


def prepare_speechcommands(args: argparse.Namespace) -> list[DataDir]:
    """35 classes (every word folder) or SUPERB's 12 (``ks1``); splits from the two list files."""
    src = os.path.abspath(args.src)
    expected = "expected the Speech Commands folder: one folder per word, validation_list.txt, testing_list.txt"
    lists = {s: _read_list(_require(os.path.join(src, f"{n}_list.txt"), expected))
             for s, n in (("valid", "validation"), ("test", "testing"))}
    files = _word_files(src, os.path.abspath(args.out))
    if not files:
        raise LayoutError(f"{src}: no word folders with audio: {expected}")
    splits: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for rel in files:
        split = "test" if rel in lists["test"] else "valid" if rel in lists["valid"] else "train"
        splits[split].append(rel)
    if args.variant == "ks1":
        return [_ks1(args, src, splits)]
    names = class_order({rel.split("/")[0] for rel in files})
    index = {name: i for i, name in enumerate(names)}
    clips = {s: [Clip(os.path.join(src, r), [index[r.split("/")[0]]]) for r in rels] for s, rels in splits.items()}
    return [DataDir(args.out, src, names, clips)]


def _read_list(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        return {line.strip().replace("\\", "/") for line in f if line.strip()}


def _word_files(src: str, out: str) -> list[str]:
    """'word/file.wav' of every clip in a word folder; folders starting with '_' (noise) are not
    words, nor is one holding OUT (its _silence_ crops)."""
    files = []
    for word in sorted(os.listdir(src)):
        folder = os.path.join(src, word)
        if not word.startswith(("_", ".")) and os.path.isdir(folder) and not _inside(out, folder):
            files += [os.path.relpath(p, src).replace(os.sep, "/") for p in find_audio(os.path.join(src, word))]
    return files


def _ks1(args: argparse.Namespace, src: str, splits: dict[str, list[str]]) -> DataDir:
    index = {name: i for i, name in enumerate(KS1_CLASSES)}
    unknown = index["_unknown_"]
    noise = find_audio(os.path.join(src, "_background_noise_"))
    if not noise:
        raise LayoutError(f"{src}/_background_noise_: no audio to cut _silence_ clips from")
    clips = {}
    for split, rels in splits.items():
        words = [Clip(os.path.join(src, r), [index.get(r.split("/")[0], unknown)]) for r in rels]
        count = args.silence_per_split if args.silence_per_split is not None else round(len(words) / 11)
        clips[split] = words + _silence(noise, args.out, split, count, args.seed, index["_silence_"])
    return DataDir(args.out, src, KS1_CLASSES, clips)


def _silence(noise: list[str], out: str, split: str, count: int, seed: int, label: int) -> list[Clip]:
    """``count`` 1 s crops at random offsets (seeded per split) cycling over the noise files,
    written as 16 kHz wavs to OUT/_silence_/."""
    import soundfile as sf

    folder = os.path.join(os.path.abspath(out), "_silence_")
    os.makedirs(folder, exist_ok=True)
    waves = [w for w in map(_noise, noise) if len(w) >= 16000]
    if count and not waves:
        raise LayoutError(f"{os.path.dirname(noise[0])}: no noise file lasts 1 s or more")
    rng = random.Random(f"{seed}/{split}")
    clips = []
    for i in range(count):
        wave = waves[i % len(waves)]
        start = rng.randrange(len(wave) - 16000 + 1)
        path = os.path.join(folder, f"{split}_{i:05d}.wav")
        sf.write(path, wave[start : start + 16000], 16000, subtype="PCM_16")
        clips.append(Clip(path, [label]))
    return clips


def _noise(path: str) -> np.ndarray:
    try:
        return read_audio(path, 16000).numpy()
    except AudioError as err:
        print(f"unreadable noise file, not used for _silence_: {err}", file=sys.stderr)
        return np.zeros(0, dtype=np.float32)


# ---------------------------------------------------------------- audioset


def prepare_audioset(args: argparse.Namespace) -> list[DataDir]:
    """Multi-label clips from the segment CSVs; CSV rows without a downloaded clip are listed."""
    csv_dir, audio = args.csv_dir or args.src, os.path.abspath(args.audio_dir or args.src)
    expected = "expected AudioSet's class_labels_indices.csv and segment CSVs (see --csv-dir, --splits)"
    try:
        labels = read_label_descriptors(_require(os.path.join(csv_dir, "class_labels_indices.csv"), expected))
    except LabelError as err:
        raise LayoutError(str(err)) from None
    if not os.path.isdir(audio):
        raise LayoutError(f"{audio}: audio folder not found (see --audio-dir)")
    found = index_clips(audio)
    splits, missing = {}, {}
    for split, name in args.splits.items():
        segments = read_segments(_require(os.path.join(csv_dir, name), expected), labels)
        splits[split] = [Clip(found[y], ids) for y, ids in segments if y in found]
        missing[split] = [y for y, _ in segments if y not in found]
    return [DataDir(args.out, audio, labels.names, splits, labels.mids, missing)]


def read_segments(path: str, labels: LabelSet) -> list[tuple[str, list[int]]]:
    """(YTID, class indices) of each row ``YTID, start, end, "mid1,mid2"`` after the # comments."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, skipinitialspace=True)  # rows use ', ' separators
        for row in reader:
            if not row or row[0].startswith("#"):
                continue
            if len(row) != 4:
                raise LayoutError(f"{path}:{reader.line_num}: expected 'YTID, start, end, \"mids\"', got {row}")
            try:
                rows.append((row[0], [labels.lookup(m.strip()) for m in row[3].split(",")]))
            except LookupError as err:
                raise LayoutError(f"{path}:{reader.line_num}: {err.args[0]}") from None
    return rows


def index_clips(folder: str) -> dict[str, str]:
    """YTID -> file, from one walk of ``folder``. Accepts ``{YTID}.ext``, ``{YTID}_{anything}.ext``
    and ``Y{YTID}[_...].ext`` (YouTube ids are 11 characters); an exact stem match wins, else the
    first file in sorted order."""
    exact: dict[str, str] = {}
    derived: dict[str, str] = {}
    for path in find_audio(folder):
        stem = os.path.splitext(os.path.basename(path))[0]
        exact.setdefault(stem, path)
        if stem[11:12] == "_":
            derived.setdefault(stem[:11], path)
        if stem.startswith("Y") and stem[12:13] in ("", "_"):
            derived.setdefault(stem[1:12], path)
    return {**derived, **exact}


# ---------------------------------------------------------------- folders and csv


def prepare_folders(args: argparse.Namespace) -> list[DataDir]:
    """One class per subfolder of SRC (its audio found recursively); stratified seeded split.
    Class order: ``class_order`` (by number when every folder name is one). A folder without
    a readable audio file is no class, and is named on stderr."""
    src = os.path.abspath(args.src)
    found: dict[str, list[str]] = {}
    for entry in sorted(os.listdir(src)):
        folder = os.path.join(src, entry)
        if entry.startswith(".") or not os.path.isdir(folder):
            continue
        files = find_audio(folder)
        readable = [p for p in files if args.lengths.get(p) is not None]
        if readable:
            found[entry] = readable
        else:
            why = "holds no audio file" if not files else f"none of its {len(files)} audio file(s) is readable"
            print(f"note: {folder} {why}: not a class", file=sys.stderr)
    if not found:
        raise LayoutError(f"{src}: no subfolder holds readable audio; expected one subfolder per class")
    names = class_order(found)
    clips = [Clip(p, [i]) for i, n in enumerate(names) for p in found[n]]
    valid, test = _percents(args)
    return [DataDir(args.out, src, names, split_by_class(clips, valid, test, args.seed))]


def prepare_csv(args: argparse.Namespace) -> list[DataDir]:
    """Clips listed in a CSV with header ``path,labels[,split]``; labels are ';'-separated,
    splits are train/valid/test. A clip listed twice (in one split or two) is refused."""
    table = os.path.abspath(_require(args.src, "expected a CSV file with header path,labels[,split]"))
    root = os.path.dirname(table)
    rows, has_split = _csv_rows(table)
    _refuse_repeats(table, root, rows)
    names = class_order({label for _, _, labels, _ in rows for label in labels})
    if any("," in n for n in names):
        print(f"note: class names with commas in {table}; separate several labels with ';'", file=sys.stderr)
    index = {name: i for i, name in enumerate(names)}
    clips = [(Clip(os.path.join(root, p), [index[x] for x in labels]), split) for _, p, labels, split in rows]
    if not has_split:
        valid, test = _percents(args)
        return [DataDir(args.out, root, names, split_by_class([c for c, _ in clips], valid, test, args.seed))]
    if args.valid_percent is not None or args.test_percent is not None:
        raise LayoutError(f"{table} has a split column: drop --valid-percent/--test-percent or the column")
    splits: dict[str, list[Clip]] = {}
    for clip, split in clips:
        splits.setdefault(split, []).append(clip)
    if "train" not in splits:
        raise LayoutError(f"{table}: no row has split 'train'")
    return [DataDir(args.out, root, names, splits)]


def _refuse_repeats(table: str, root: str, rows: list[tuple[int, str, list[str], str]]) -> None:
    """A clip on two rows would be trained on and scored, or weigh double: name both lines."""
    first: dict[str, int] = {}
    for lineno, path, _, _ in rows:
        key = os.path.normcase(os.path.abspath(os.path.join(root, path)))
        if key in first:
            raise LayoutError(f"{table}:{lineno}: {path} is already listed on line {first[key]}; "
                              "list each clip once (one row, several ';'-separated labels)")
        first[key] = lineno


def _csv_rows(table: str) -> tuple[list[tuple[int, str, list[str], str]], bool]:
    with open(table, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        fields = [h.strip() for h in reader.fieldnames or []]
        if not {"path", "labels"} <= set(fields):
            raise LayoutError(f"{table}:1: header must name columns path,labels (and optionally split), got {fields}")
        reader.fieldnames = fields
        rows = [(reader.line_num, *_csv_row(table, reader.line_num, row, "split" in fields)) for row in reader]
    if not rows:
        raise LayoutError(f"{table}: no clips listed")
    return rows, "split" in fields


def _csv_row(table: str, lineno: int, row: dict, has_split: bool) -> tuple[str, list[str], str]:
    path = (row["path"] or "").strip()
    labels = list(dict.fromkeys(x.strip() for x in (row["labels"] or "").split(";") if x.strip()))
    split = (row.get("split") or "").strip() if has_split else ""
    if not path or not labels or (has_split and not split):
        raise LayoutError(f"{table}:{lineno}: every row needs a path, at least one label"
                          + (" and a split" if has_split else ""))
    if has_split:
        try:
            split = split_name(split)
        except SplitError as err:
            raise LayoutError(f"{table}:{lineno}: {err}") from None
    return path, labels, split


def _percents(args: argparse.Namespace) -> tuple[float, float]:
    valid = 0.1 if args.valid_percent is None else args.valid_percent
    test = 0.1 if args.test_percent is None else args.test_percent
    return valid, test


# ---------------------------------------------------------------- command line


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
    try:
        return {split_name(k): v.strip() for k, v in pairs}
    except SplitError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mae-ast-prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, help="data folder to write")
    common.add_argument("--seed", type=int, default=0, help="seed of random splits and silence crops")
    sub = parser.add_subparsers(dest="layout", required=True, metavar="LAYOUT")

    def layout(name: str, run: Callable, src: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=run.__doc__)
        p.add_argument("src", metavar="SRC", help=src)
        p.set_defaults(run=run)
        return p

    p = layout("esc50", prepare_esc50, "the ESC-50-master folder", "ESC-50, one data folder per test fold")
    p.add_argument("--folds", type=_folds, help="test folds to write, e.g. 1,2,3,4,5 (default: every fold)")
    p = layout("speechcommands", prepare_speechcommands, "the Speech Commands v0.02 folder", "Speech Commands")
    p.add_argument("--variant", choices=["35", "ks1"], default="35", help="35 words, or SUPERB's 12 classes")
    p.add_argument("--silence-per-split", type=int, help="ks1: _silence_ crops per split "
                   "(default: the split's word clips / 11, so silence is ~1/12 of it)")
    p = layout("audioset", prepare_audioset, "folder with the CSVs and clips (see --csv-dir/--audio-dir)", "AudioSet")
    p.add_argument("--csv-dir", help="folder of class_labels_indices.csv and the segment CSVs (default: SRC)")
    p.add_argument("--audio-dir", help="folder of downloaded clips, searched recursively (default: SRC)")
    p.add_argument("--splits", type=_splits, default=_splits(AUDIOSET_SPLITS), help=f"default: {AUDIOSET_SPLITS}")
    for name, run, src in (("folders", prepare_folders, "folder with one subfolder per class"),
                           ("csv", prepare_csv, "CSV file with header path,labels[,split]")):
        p = layout(name, run, src, f"{name}: any labelled clips")
        p.add_argument("--valid-percent", type=_fraction, help="fraction of each class for valid (default 0.1)")
        p.add_argument("--test-percent", type=_fraction, help="fraction of each class for test (default 0.1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "silence_per_split", None) is not None and args.silence_per_split < 0:
        parser.error("--silence-per-split must be >= 0")
    if (getattr(args, "valid_percent", None) or 0) + (getattr(args, "test_percent", None) or 0) > 1:
        parser.error("--valid-percent + --test-percent must not exceed 1")
    args.lengths = lengths = Lengths()  # header lengths, read once for every layout and folder
    try:
        kind, exists = ("file", os.path.isfile) if args.layout == "csv" else ("folder", os.path.isdir)
        if not exists(args.src):
            raise LayoutError(f"{args.src}: not a {kind} (SRC of the {args.layout} layout)")
        data_dirs = args.run(args)
        rows = [row for data in data_dirs for row in write_data_dir(data, lengths)]
    except (LayoutError, SplitError) as err:
        print(f"mae-ast-prepare: error: {err}", file=sys.stderr)
        return 1
    missing = set().union(*(ids for data in data_dirs for ids in data.missing.values()))
    print_summary(rows, len(missing), len(lengths.errors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
