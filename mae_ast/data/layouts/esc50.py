"""ESC-50 (``ESC-50-master``: meta/esc50.csv, audio/): one data folder per held-out fold."""

from __future__ import annotations

import csv
import io
import os

from ..labels import read_text
from .common import Clip, DataDir, LayoutError, PrepareOptions, require


def prepare_esc50(opts: PrepareOptions) -> list[DataDir]:
    """One folder per held-out fold k: train = the other folds, valid = test = fold k (as SSAST)."""
    meta = require(os.path.join(opts.src, "meta", "esc50.csv"),
                    "expected the ESC-50-master folder, holding meta/esc50.csv and audio/")
    audio = os.path.abspath(require(os.path.join(opts.src, "audio"), "expected ESC-50-master/audio/"))
    rows = _esc50_rows(meta)
    names = _esc50_names(meta, rows)
    present = sorted({fold for _, fold, _, _ in rows})
    folds = opts.folds or present
    if set(folds) - set(present):
        raise LayoutError(f"{meta}: no clips in fold(s) {sorted(set(folds) - set(present))}; its folds are {present}")
    dirs = []
    for k in folds:
        held_out = [Clip(os.path.join(audio, f), [t]) for f, fold, t, _ in rows if fold == k]
        train = [Clip(os.path.join(audio, f), [t]) for f, fold, t, _ in rows if fold != k]
        splits = {"train": train, "valid": held_out, "test": held_out}
        dirs.append(DataDir(os.path.join(opts.out, f"fold{k}"), audio, names, splits, tag=f"fold{k}"))
    return dirs


def _esc50_rows(meta: str) -> list[tuple[str, int, int, str]]:
    """(filename, fold, target, category) of each row of meta/esc50.csv."""
    reader = csv.DictReader(io.StringIO(read_text(meta), newline=""))
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
