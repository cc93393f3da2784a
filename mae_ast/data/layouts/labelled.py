"""Any labelled clips: one subfolder per class (``folders``), or a CSV listing
``path,labels[,split]`` (``csv``); seeded stratified splits unless the CSV gives them."""

from __future__ import annotations

import csv
import io
import os

from ..datadir import SplitError, find_audio, split_name
from ..labels import class_order, read_text
from .common import Clip, DataDir, LayoutError, PrepareOptions, require, split_by_class, subfolders


def prepare_folders(opts: PrepareOptions) -> list[DataDir]:
    """One class per subfolder of SRC (its audio found recursively), in ``class_order``; a folder
    without a readable audio file is no class, and is named in ``opts.notes``."""
    src = os.path.abspath(opts.src)
    found: dict[str, list[str]] = {}
    for entry in subfolders(src):
        folder = os.path.join(src, entry)
        files = find_audio(folder, absolute=True)
        readable = [p for p in files if opts.lengths.get(p) is not None]
        if readable:
            found[entry] = readable
        else:
            why = "holds no audio file" if not files else f"none of its {len(files)} audio file(s) is readable"
            opts.notes.append(f"note: {folder} {why}: not a class")
    if not found:
        raise LayoutError(f"{src}: no subfolder holds readable audio; expected one subfolder per class")
    names = class_order(found)
    clips = [Clip(p, [i]) for i, n in enumerate(names) for p in found[n]]
    return [DataDir(opts.out, src, names, split_by_class(clips, opts, src))]


def prepare_csv(opts: PrepareOptions) -> list[DataDir]:
    """Clips listed in a CSV with header ``path,labels[,split]``; labels are ';'-separated,
    splits are train/valid/test. A clip listed twice (in one split or two) is refused."""
    table = os.path.abspath(require(opts.src, "expected a CSV file with header path,labels[,split]"))
    root = os.path.dirname(table)
    rows, has_split = _csv_rows(table)
    _refuse_repeats(table, root, rows)
    names = class_order({label for _, _, labels, _ in rows for label in labels})
    if any("," in n for n in names):
        opts.notes.append(f"note: class names with commas in {table}; separate several labels with ';'")
    index = {name: i for i, name in enumerate(names)}
    clips = [(Clip(os.path.join(root, p), [index[x] for x in labels]), split) for _, p, labels, split in rows]
    if not has_split:
        return [DataDir(opts.out, root, names, split_by_class([c for c, _ in clips], opts, root))]
    if opts.valid_percent is not None or opts.test_percent is not None:
        raise LayoutError(f"{table} has a split column: drop --valid-percent/--test-percent or the column")
    splits: dict[str, list[Clip]] = {}
    for clip, split in clips:
        splits.setdefault(split, []).append(clip)
    if "train" not in splits:
        raise LayoutError(f"{table}: no row has split 'train'")
    return [DataDir(opts.out, root, names, splits)]


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
    reader = csv.DictReader(io.StringIO(read_text(table), newline=""))
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

