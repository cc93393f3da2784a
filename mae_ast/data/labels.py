"""Clip labels for fine-tuning, in the convention of fairseq's data2vec ``audio_classification``
task and EAT. Beside ``{split}.tsv`` live:

``label_descriptors.csv``
    A header line ``index,mid,display_name`` then one row per class, exactly like AudioSet's
    ``class_labels_indices.csv``. Indices are 0..C-1, each once; a display name holding a
    comma is double-quoted (standard CSV).

``{split}.lbl``
    One line per manifest entry, in the manifest's order. The LAST tab-separated field holds
    the clip's labels separated by commas; earlier fields (a clip id, say) are ignored. Each
    label is accepted as an integer class index, a ``mid`` (``/m/09x0r``) or a display name
    from the descriptors, tried in that order. A display name that itself holds commas
    (``Child speech, kid speaking``) is matched whole: the longest run of comma-separated
    pieces that names a class wins.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field

import numpy as np

HEADER = ["index", "mid", "display_name"]
_INT = re.compile(r"-?\d+")


class LabelError(ValueError):
    """A label or descriptor file that cannot be used; the message names the file and line."""


@dataclass
class LabelSet:
    """The classes of a data folder: ``names[i]`` and ``mids[i]`` describe class ``i``."""

    names: list[str]
    mids: list[str]
    source: str = "<memory>"  # file the classes came from, for error messages
    _by_key: dict[str, int] = field(init=False, repr=False)
    _ambiguous: set[str] = field(init=False, repr=False)
    _max_commas: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_key, self._ambiguous = {}, set()
        for i, name in enumerate(self.names):
            if name in self._by_key:
                self._ambiguous.add(name)
            self._by_key.setdefault(name, i)
        for i, mid in enumerate(self.mids):
            if mid:  # mids win over display names: they are what EAT/data2vec files hold
                self._by_key[mid] = i
                self._ambiguous.discard(mid)
        self._max_commas = max((k.count(",") for k in self._by_key), default=0)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def __contains__(self, label: str) -> bool:
        return label in self._by_key

    def lookup(self, label: str) -> int:
        """Class index of an integer index, mid or display name; ``LookupError`` otherwise."""
        if _INT.fullmatch(label):
            index = int(label)
            if not 0 <= index < self.num_classes:
                raise IndexError(f"class index {index} out of range 0..{self.num_classes - 1} of {self.source}")
            return index
        if label in self._ambiguous:
            raise KeyError(f"display name {label!r} names several classes in {self.source}: use the index or mid")
        if label not in self._by_key:
            raise KeyError(f"unknown label {label!r}: neither an index, a mid nor a display name of {self.source}")
        return self._by_key[label]

    def split(self, text: str) -> list[str]:
        """Comma-separated labels of ``text``, keeping display names that contain commas whole."""
        pieces, out, i = text.split(","), [], 0
        while i < len(pieces):
            # Longest run first, bounded by the most commas any class key holds (0 for most sets).
            for j in range(min(len(pieces), i + 1 + self._max_commas), i, -1):
                candidate = ",".join(pieces[i:j]).strip()
                if j == i + 1 or candidate in self._by_key:
                    break
            out.append(candidate)
            i = j
        return out


def read_label_descriptors(path: str) -> LabelSet:
    """Read ``label_descriptors.csv`` (header ``index,mid,display_name``; indices 0..C-1 once each)."""
    if not os.path.isfile(path):
        raise LabelError(f"{path}: label descriptors not found; write it with mae-ast-prepare or by hand "
                         f"(header '{','.join(HEADER)}', then one row per class)")
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if header != HEADER:
            raise LabelError(f"{path}:1: header must be '{','.join(HEADER)}', got {','.join(header)!r}")
        by_index: dict[int, tuple[str, str, int]] = {}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            _descriptor_row(path, reader.line_num, row, by_index)
    return _label_set(path, by_index)


def _descriptor_row(path: str, lineno: int, row: list[str], by_index: dict[int, tuple[str, str, int]]) -> None:
    if len(row) != 3:
        raise LabelError(f"{path}:{lineno}: expected 3 fields index,mid,display_name, got {len(row)}; "
                         "quote display names that contain commas")
    index, mid, name = (cell.strip() for cell in row)
    if not _INT.fullmatch(index):
        raise LabelError(f"{path}:{lineno}: index {index!r} is not an integer")
    if int(index) in by_index:
        first = by_index[int(index)][2]
        raise LabelError(f"{path}:{lineno}: index {index} already given on line {first}; give each index once")
    by_index[int(index)] = (mid, name, lineno)


def _label_set(path: str, by_index: dict[int, tuple[str, str, int]]) -> LabelSet:
    if not by_index:
        raise LabelError(f"{path}:2: no classes after the header; add one row per class")
    count = len(by_index)
    absent = sorted(set(range(count)) - set(by_index))
    if absent:
        bad = max(by_index)
        raise LabelError(f"{path}:{by_index[bad][2]}: index {bad} but index {absent[0]} is missing; "
                         f"indices must be 0..{count - 1}, each once")
    return LabelSet([by_index[i][1] for i in range(count)], [by_index[i][0] for i in range(count)], path)


def read_labels(path: str, label_set: LabelSet, num_entries: int, multi_label: bool) -> list[list[int]]:
    """Class indices of each line of ``{split}.lbl``; ``num_entries`` is the manifest's entry count."""
    if not os.path.isfile(path):
        raise LabelError(f"{path}: label file not found; it needs one line per entry of the manifest")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():  # a trailing blank line is not an entry
        lines.pop()
    if len(lines) != num_entries:
        where = num_entries + 1 if len(lines) > num_entries else max(len(lines), 1)
        raise LabelError(f"{path}:{where}: {len(lines)} label lines but the manifest has {num_entries} entries; "
                         "write one label line per manifest entry, in the same order")
    return [_parse_line(path, n, line, label_set, multi_label) for n, line in enumerate(lines, start=1)]


def _parse_line(path: str, lineno: int, line: str, label_set: LabelSet, multi_label: bool) -> list[int]:
    text = line.split("\t")[-1].strip()
    if not text:
        raise LabelError(f"{path}:{lineno}: empty label field; every clip needs at least one label")
    try:
        labels = list(dict.fromkeys(label_set.lookup(tok) for tok in label_set.split(text)))
    except LookupError as err:
        raise LabelError(f"{path}:{lineno}: {err.args[0]}") from None
    if len(labels) > 1 and not multi_label:
        raise LabelError(f"{path}:{lineno}: {len(labels)} labels ({text}) in a single-label task; "
                         "set task.multi_label=true or keep one label per line")
    return labels


def write_label_descriptors(path: str, names: list[str], mids: list[str] | None = None) -> None:
    """Write ``label_descriptors.csv``. Without ``mids`` the class name is written as mid, so tools
    that key on the mid column still find the classes."""
    mids = list(names) if mids is None else mids
    if len(mids) != len(names):
        raise ValueError(f"{len(names)} names but {len(mids)} mids")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows([i, mid, name] for i, (mid, name) in enumerate(zip(mids, names)))


def write_labels(path: str, rows: list[list[int]], ids: list[str] | None = None) -> None:
    """Write ``{split}.lbl``: ``id<TAB>i,j,...`` per clip (just ``i,j,...`` without ids)."""
    if ids is not None and len(ids) != len(rows):
        raise ValueError(f"{len(rows)} label rows but {len(ids)} ids")
    with open(path, "w", encoding="utf-8") as f:
        for n, row in enumerate(rows):
            if not row:
                raise ValueError(f"row {n} has no label")
            labels = ",".join(str(int(i)) for i in row)
            f.write(f"{ids[n]}\t{labels}\n" if ids is not None else f"{labels}\n")


def label_frequencies(rows: list[list[int]], num_classes: int) -> np.ndarray:
    """Clips per class (a multi-label clip counts once for each of its classes)."""
    flat = np.fromiter((i for row in rows for i in row), dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= num_classes):
        raise ValueError(f"label indices must lie in 0..{num_classes - 1}")
    return np.bincount(flat, minlength=num_classes)
