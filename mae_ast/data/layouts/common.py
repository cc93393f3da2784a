"""What every dataset layout shares: the clips and classes of one output folder
(``DataDir``), the options of a run (``PrepareOptions``), header lengths read once per file
(``Lengths``), and writing a folder through ``mae_ast.data.datadir``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..audio_io import AudioError
from ..datadir import audio_length, check_disjoint, remove_stale, split_indices, write_split
from ..labels import LabelSet, default_mids, write_label_descriptors

AUDIOSET_SPLITS = {"train": "balanced_train_segments.csv", "valid": "eval_segments.csv", "test": "eval_segments.csv"}


class LayoutError(RuntimeError):
    """The source is not the layout asked for; the message says what was expected."""


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

    def row_name(self, split: str) -> str:
        return f"{self.tag}/{split}" if self.tag else split


class Lengths:
    """Header lengths, read once per file even when several folders list it (ESC-50 folds);
    unreadable files are kept with their error, for the report."""

    def __init__(self) -> None:
        self.known: dict[str, int] = {}
        self.errors: dict[str, AudioError] = {}

    def get(self, path: str) -> int | None:
        if path not in self.known and path not in self.errors:
            try:
                self.known[path] = audio_length(path)
            except AudioError as err:
                self.errors[path] = err
        return self.known.get(path)


@dataclass
class PrepareOptions:
    """What a layout needs; each layout reads the fields it documents."""

    src: str
    out: str
    seed: int = 0  # random splits and silence crops
    valid_percent: float | None = None  # folders, csv: default datadir.DEFAULT_FRACTION
    test_percent: float | None = None  # folders, csv: default datadir.DEFAULT_FRACTION
    folds: list[int] | None = None  # esc50: default every fold
    variant: str = "35"  # speechcommands: "35" or "ks1"
    silence_per_split: int | None = None  # speechcommands ks1
    test_set: str | None = None  # speechcommands ks1: v0.01's speech_commands_test_set folder
    csv_dir: str | None = None  # audioset
    audio_dir: str | None = None  # audioset
    splits: dict[str, str] = field(default_factory=lambda: dict(AUDIOSET_SPLITS))  # audioset
    lengths: Lengths = field(default_factory=Lengths)
    notes: list[str] = field(default_factory=list)  # for the user: folders that are no class etc.


def write_data_dir(data: DataDir, lengths: Lengths, notes: list[str]) -> tuple[list[tuple], list[str]]:
    """Write the folder; returns summary rows (split, clips, classes, missing, unreadable) and
    the stale files removed. Classes of an evaluation split that train lacks go to ``notes``
    (a model cannot learn them)."""
    check_disjoint({s: [c.path for c in clips] for s, clips in data.splits.items()}, data.out)
    os.makedirs(data.out, exist_ok=True)
    removed = remove_stale(data.out, data.splits)
    mids = data.mids or default_mids(data.names)
    descriptors = os.path.join(data.out, "label_descriptors.csv")
    write_label_descriptors(descriptors, data.names, mids)
    label_set = LabelSet(data.names, mids, descriptors)
    rows, present_in = [], {}
    for split, clips in data.splits.items():
        kept = [c for c in clips if lengths.get(c.path) is not None]
        present_in[split] = {i for clip in kept for i in clip.labels}
        removed += write_split(data.out, split, data.root, [c.path for c in kept], [lengths.get(c.path) for c in kept],
                               [c.labels for c in kept], label_set, data.missing.get(split))
        rows.append((data.row_name(split), len(kept), len(present_in[split]), len(data.missing.get(split, [])),
                     len(clips) - len(kept)))
    for split in ("valid", "test"):
        absent = sorted(present_in.get(split, set()) - present_in.get("train", set()))
        if absent:
            shown = ", ".join(repr(data.names[i]) for i in absent[:10]) + (" ..." if len(absent) > 10 else "")
            notes.append(f"note: {data.row_name(split)} has clips of {len(absent)} class(es) with no train clip "
                         f"({shown}): a model cannot learn them, so they only lower the score")
    return rows, removed


def subfolders(folder: str) -> list[str]:
    """Names of the folders in ``folder``, sorted; hidden ones (a leading '.') are left out."""
    return [n for n in sorted(os.listdir(folder)) if not n.startswith(".") and os.path.isdir(os.path.join(folder, n))]


def split_by_class(clips: list[Clip], opts: PrepareOptions, root: str) -> dict[str, list[Clip]]:
    """``split_indices`` (fractions from ``opts``, omitted ones at their default) on paths relative
    to ``root``, with classes from each clip's first label; a ``SplitError`` if none is left for train."""
    keys = [os.path.relpath(c.path, root).replace(os.sep, "/") for c in clips]
    parts = split_indices(keys, opts.valid_percent, opts.test_percent, opts.seed, [c.labels[0] for c in clips])
    return {split: [clips[i] for i in idx] for split, idx in parts.items()}


def require(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise LayoutError(f"{path} not found: {what}")
    return path
