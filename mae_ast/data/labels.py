"""Clip labels for fine-tuning: ``label_descriptors.csv`` and ``{split}.lbl`` beside
``{split}.tsv``, as fairseq's data2vec ``audio_classification`` task and EAT write them
(file format: README, "Fine-tuning and evaluation"; the finer rules at ``clip_names``,
``LabelSet.split``, ``read_text``). Two readers give the same rows: the bulk one meets
AudioSet's 2 M lines in bench/data_scale.py's 5 CPU s / 300 MB; the line one explains errors.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .manifest import PackedEntries


HEADER = ["index", "mid", "display_name"]
_INT = re.compile(r"-?\d+")
logger = logging.getLogger(__name__)
_WARNED: set[str] = set()  # label files already warned about as read unchecked


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
        self._by_key = {name: i for i, name in reversed(list(enumerate(self.names)))}  # a name's first class
        # mids win over display names: they are what EAT/data2vec files hold
        self._by_key.update({mid: i for i, mid in enumerate(self.mids) if mid})
        self._ambiguous = {n for n, k in Counter(self.names).items() if k > 1} - set(filter(None, self.mids))
        self._max_commas = max((k.count(",") for k in self._by_key), default=0)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def lookup(self, label: str) -> int:
        """Class index of an integer index, mid or display name; ``LookupError`` otherwise."""
        if _INT.fullmatch(label):
            index, named = int(label), self._by_key.get(label)
            in_range = 0 <= index < self.num_classes
            if named is not None and in_range and named != index:
                raise KeyError(f"label {label!r} is ambiguous in {self.source}: class index {index} is "
                               f"{self.names[index]!r}, but {label!r} is also the name of class {named}; "
                               + (f"write the mid {self.mids[named]!r}" if not _INT.fullmatch(self.mids[named])
                                  else "give the classes non-numeric mids in label_descriptors.csv"))
            if named is not None and not in_range:
                return named  # only a name: no class has this index
            if not in_range:
                raise IndexError(f"class index {index} out of range 0..{self.num_classes - 1} of {self.source}")
            return index
        if label in self._ambiguous:
            raise KeyError(f"display name {label!r} names several classes in {self.source}: use the index or mid")
        if label not in self._by_key:
            raise KeyError(f"unknown label {label!r}: neither an index, a mid nor a display name of {self.source}")
        return self._by_key[label]

    def token(self, index: int) -> str:
        """How a label file writes class ``index`` so that ``lookup`` reads it back unambiguously:
        the index itself, else the class's mid (classes named by other numbers)."""
        for candidate in (str(index), self.mids[index]):
            try:
                if candidate and self.lookup(candidate) == index:
                    return candidate
            except LookupError:
                continue
        raise LabelError(f"class {index} ({self.names[index]!r}) of {self.source} cannot be written unambiguously; "
                         "give it a non-numeric mid")

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


def read_text(path: str) -> str:
    """A text file's content: UTF-8 (a byte-order mark accepted) or UTF-16 with its byte-order
    mark (Windows' "Unicode"); else a ``LabelError`` naming the line and the encoding to use."""
    with open(path, "rb") as f:
        data = f.read()
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        return data.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as err:
        if utf16:
            raise LabelError(f"{path}: starts with a UTF-16 byte-order mark but is not valid UTF-16 "
                             f"(byte {err.start}); save it as UTF-8") from None
        line = data.count(b"\n", 0, err.start) + 1
        guess = ("UTF-16 without a byte-order mark" if data.count(b"\x00") > len(data) // 4
                 else "a Windows or legacy code page (cp1252, latin-1)")
        raise LabelError(f"{path}:{line}: not UTF-8 (byte 0x{data[err.start]:02x}); it looks like {guess}: "
                         "save it as UTF-8 (e.g. iconv -f cp1252 -t utf-8), or as UTF-16 with a "
                         "byte-order mark") from None


def read_label_descriptors(path: str) -> LabelSet:
    """Read ``label_descriptors.csv``: rows ``index,mid,display_name`` (indices 0..C-1 once
    each), after AudioSet's header line or, as data2vec/EAT write it, without one."""
    if not os.path.isfile(path):
        raise LabelError(f"{path}: label descriptors not found; write it with mae-ast-prepare or by hand "
                         f"(one row index,mid,display_name per class)")
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    first = next(reader, [])
    headerless = bool(first) and _INT.fullmatch(first[0].strip()) is not None
    if not headerless and [h.strip() for h in first] != HEADER:
        raise LabelError(f"{path}:1: header must be '{','.join(HEADER)}' (or none: data2vec's first row "
                         f"'0,mid,name'), got {','.join(first)!r}")
    by_index: dict[int, tuple[str, str, int]] = {}  # index -> (mid, name, line)
    for lineno, cells in ([(1, first)] if headerless else []) + [(reader.line_num, row) for row in reader]:
        if not any(cell.strip() for cell in cells):
            continue
        if headerless and len(cells) > 3:  # data2vec's files leave commas in names unquoted
            cells = cells[:2] + [",".join(cells[2:])]
        if len(cells) != 3:
            raise LabelError(f"{path}:{lineno}: expected 3 fields index,mid,display_name, got {len(cells)}; "
                             "quote display names that contain commas")
        index, mid, name = (cell.strip() for cell in cells)
        if not _INT.fullmatch(index):
            raise LabelError(f"{path}:{lineno}: index {index!r} is not an integer")
        if int(index) in by_index:
            raise LabelError(f"{path}:{lineno}: index {index} already given on line {by_index[int(index)][2]}; "
                             "give each index once")
        by_index[int(index)] = (mid, name, lineno)
    if not by_index:
        raise LabelError(f"{path}: no classes; add one row index,mid,display_name per class")
    count = len(by_index)
    absent = sorted(set(range(count)) - set(by_index))
    if absent:
        bad = max(by_index)
        raise LabelError(f"{path}:{by_index[bad][2]}: index {bad} but index {absent[0]} is missing; "
                         f"indices must be 0..{count - 1}, each once")
    first_line: dict[str, int] = {}
    for i in range(count):
        mid, _, lineno = by_index[i]
        if mid and mid in first_line:
            raise LabelError(f"{path}:{lineno}: mid {mid!r} already given on line {first_line[mid]}; "
                             "a label given by mid must name one class")
        first_line.setdefault(mid, lineno)
    return LabelSet([by_index[i][1] for i in range(count)], [by_index[i][0] for i in range(count)], path)


def _offsets(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """CSR offsets (0, then the running sum) of rows of these lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


class LabelRows(Sequence[list[int]]):
    """Each clip's class indices, stored as CSR arrays (``indices[offsets[i]:offsets[i + 1]]``
    is clip ``i``'s labels, in file order): at 2 M clips a list of lists costs ~400 MB and
    every forked dataloader worker copies the pages it reads; these arrays are not copied."""

    def __init__(self, offsets: np.ndarray, indices: np.ndarray) -> None:
        self.offsets, self.indices = offsets, indices

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[int]]) -> LabelRows:
        rows = [list(map(int, r)) for r in rows]
        offsets = _offsets([len(r) for r in rows])
        return cls(offsets, np.fromiter((i for r in rows for i in r), dtype=np.int32, count=int(offsets[-1])))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list[int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"clip {i} out of range ({len(self)} clips)")
        i = int(i) % len(self)
        return self.indices[self.offsets[i] : self.offsets[i + 1]].tolist()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LabelRows):
            return np.array_equal(self.offsets, other.offsets) and np.array_equal(self.indices, other.indices)
        return isinstance(other, Sequence) and self.tolist() == [list(r) for r in other]

    def row_ids(self) -> np.ndarray:
        """(total labels,) the clip each entry of ``indices`` belongs to."""
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    def take(self, order: np.ndarray) -> LabelRows:
        """The rows ``order[0], order[1], ...`` (a gather, no Python loop)."""
        lengths = np.diff(self.offsets)[order]
        offsets = _offsets(lengths)
        shift = np.repeat(self.offsets[:-1][order] - offsets[:-1], lengths)
        return LabelRows(offsets, self.indices[np.arange(offsets[-1]) + shift])

    def tolist(self) -> list[list[int]]:
        return [self[i] for i in range(len(self))]


def read_labels(path: str, label_set: LabelSet, entries: int | Sequence[str], multi_label: bool,
                manifest: str = "the manifest") -> list[list[int]]:
    """Class indices of each manifest entry, from ``{split}.lbl``. ``entries`` are the
    manifest's paths as written (or their count): lines naming their clips are realigned to them."""
    return read_label_rows(path, label_set, entries, multi_label, manifest).tolist()


class _Irregular(Exception):
    """A file the bulk reader does not take; the line-by-line reader reads it."""


def read_label_rows(path: str, label_set: LabelSet, entries: int | Sequence[str], multi_label: bool,
                    manifest: str = "the manifest") -> LabelRows:
    """``read_labels`` as ``LabelRows``: in bulk (``_read_bulk``, clips matched by ``_hashed_order``)
    when the file allows, else line by line (``_read_lines``), which explains every error."""
    if not os.path.isfile(path):
        raise LabelError(f"{path}: label file not found; it needs one line per entry of {manifest}")
    try:  # the file's text is let go before the clips are matched
        rows, order = _read_bulk(read_text(path), label_set, entries if isinstance(entries, int) else len(entries),
                                 multi_label)
        if order is not None and not isinstance(entries, int):
            order = _hashed_order(order, entries)
    except _Irregular:
        rows, order = _read_lines(path, read_text(path), label_set, entries, multi_label, manifest)
    if order is None or isinstance(entries, int):
        if (key := os.path.abspath(path)) not in _WARNED:  # once per label file and process
            _WARNED.add(key)
            logger.warning(f"{path}: its lines do not name their clips, so each label is given to the clip on the "
                           f"same line of {manifest} without a check that it belongs to it; write "
                           "'clip<TAB>labels' lines (mae-ast-prepare does) to have them checked")
        return rows
    if not np.array_equal(order, np.arange(len(order))):
        logger.info(f"{path}: lines realigned to the order of {manifest} by the clip each line names")
    return rows.take(order)


def _read_lines(path: str, text: str, label_set: LabelSet, entries: int | Sequence[str], multi_label: bool,
                manifest: str) -> tuple[LabelRows, np.ndarray | None]:
    """Rows in line order and, when lines name their clips, each entry's line (``align``).
    Problems are reported in this order: a blank line, the line count, the first bad line."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    blank = next((n for n, line in enumerate(lines, start=1) if not line.strip()), None)
    if blank is not None:
        raise LabelError(f"{path}:{blank}: blank line; write one label line per manifest entry, none empty")
    n_entries = entries if isinstance(entries, int) else len(entries)
    if len(lines) != n_entries:
        where = n_entries + 1 if len(lines) > n_entries else max(len(lines), 1)
        raise LabelError(f"{path}:{where}: {len(lines)} label lines but {manifest} has {n_entries} entries; "
                         "write one label line per manifest entry")
    parsed: dict[str, int] = {}  # label text -> its row in ``distinct``: each parsed once
    distinct: list[list[int]] = []
    row_of = np.empty(len(lines), dtype=np.int64)
    for n, line in enumerate(lines):
        row = parsed.get(labels := line.split("\t")[-1].strip())
        if row is None:
            row = parsed[labels] = len(distinct)
            distinct.append(_parse_line(path, n + 1, line, label_set, multi_label))
        row_of[n] = row
    rows = LabelRows.from_rows(distinct).take(row_of)
    ids = None if isinstance(entries, int) else clip_names(lines, entries)
    if ids is None or all(i is None for i in ids):
        return rows, None
    return rows, np.asarray(align(path, ids, list(entries), manifest), dtype=np.int64)


# Where str.splitlines / str.strip differ from splitting at "\n" and stripping " " and "\t"
# (a test checks every code point): a file holding one is read line by line.
_ODD_SPACE = re.compile("[\r\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_ODD_PATH = ("//", "/./", "/../", "\n./", "\n../", "/\n", "/.\n", "/..\n")  # what normpath changes, but "."
# What float() reads in ASCII: [0-9+-._eE] only, or a signed inf/infinity/nan (any case).
_NUMBER_WORDS = tuple(f"\n{sign}{word}\n".encode() for sign in ("", "+", "-") for word in ("inf", "infinity", "nan"))
_CHUNK = 1 << 22  # characters split at once: ~130 k AudioSet lines, ~40 MB of Python objects


def _read_bulk(text: str, label_set: LabelSet, n_entries: int,
               multi_label: bool) -> tuple[LabelRows, np.ndarray | None]:
    """``_read_lines``'s rows, with str methods and numpy on slices of the file instead of
    Python work per line, and the hash of each line's clip name (None: lines name no clip).
    Only for ``n_entries`` lines with the same number of tabs each, first fields that are
    all names (or, before 2+ tabs, all numbers) and labels all known; else ``_Irregular``."""
    if "\r" in text and text.count("\r") == text.count("\r\n"):
        text = text.replace("\r\n", "\n")
    if os.sep != "/" or (any(c in text for c in "\r\x0b\x0c\x1c\x1d\x1e\x1f") if text.isascii()
                         else _ODD_SPACE.search(text)):
        raise _Irregular
    last = len(text)
    while last and text[last - 1] in " \t\n":  # trailing blank lines are not counted
        last -= 1
    stop = text.find("\n", last) % (len(text) + 1)  # the end of the last line with text
    if not last or text.count("\n", 0, stop) + 1 != n_entries:
        raise _Irregular
    heads = {key.split(",", 1)[0] for key in label_set._by_key if "," in key}
    classes: dict[str, int] = {}  # label as written -> class
    parts, tabs, start = [], None, 0
    while start < stop:
        end = text.find("\n", start + _CHUNK, stop) % (stop + 1)
        chunk, start = text[start:end], end + 1
        raw = np.frombuffer(chunk.encode(), dtype=np.uint8)  # tabs and commas per line, without a str per line
        newlines, tab_at, commas = (np.flatnonzero(raw == c) for c in b"\n\t,")
        per_line = np.bincount(np.searchsorted(newlines, tab_at), minlength=len(newlines) + 1)
        tabs = int(per_line[0]) if tabs is None else tabs
        if np.any(per_line != tabs):
            raise _Irregular
        line = np.searchsorted(newlines, commas)
        if tabs:
            line = line[commas > tab_at[tabs - 1 :: tabs][line]]  # the commas after each line's last tab
        fields = chunk.replace("\n", "\t").split("\t")
        del chunk, raw
        parts.append((*_bulk_labels(fields[tabs :: tabs + 1], np.bincount(line, minlength=len(newlines) + 1) + 1,
                                    label_set, heads, classes, multi_label),
                      _bulk_names(fields[:: tabs + 1], tabs) if tabs else None))
    counts, indices, hashes = zip(*parts)
    if len({h is None for h in hashes}) > 1:
        raise _Irregular  # names in some lines, numbers in others
    rows = LabelRows(_offsets(np.concatenate(counts)), np.concatenate(indices))
    return rows, None if hashes[0] is None else np.concatenate(hashes)


def _bulk_labels(texts: list[str], pieces: np.ndarray, label_set: LabelSet, heads: set[str],
                 classes: dict[str, int], multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each text's label count and class indices, as ``_parse_line`` reads them, from texts of
    ``pieces`` comma-separated pieces each; ``_Irregular`` where ``_parse_line`` would refuse
    one, or where a display name holding commas may be meant."""
    tokens = ",".join(texts).split(",")
    try:
        found = np.fromiter(map(classes.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    except KeyError:  # labels not seen before: look them up, once each
        for token in set(tokens).difference(classes):
            if not token.strip() or token.lstrip() in heads:
                raise _Irregular from None
            try:
                classes[token] = label_set.lookup(token.strip())
            except LookupError:
                raise _Irregular from None
        found = np.fromiter(map(classes.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    row = np.repeat(np.arange(len(texts)), pieces)
    # A label repeated on a line counts once (dict.fromkeys): a stable sort of (line, class)
    # keeps each pair's first place first; the keys come nearly sorted, so it is near linear.
    key = row * label_set.num_classes + found
    order = np.argsort(key, kind="stable")
    first = np.ones(len(tokens), dtype=bool)
    first[order[1:][key[order[1:]] == key[order[:-1]]]] = False
    counts = np.bincount(row[first], minlength=len(texts))
    if not multi_label and counts.max(initial=0) > 1:
        raise _Irregular
    return counts, found[first].astype(np.int32)


def _bulk_names(firsts: list[str], tabs: int) -> np.ndarray | None:
    """Hash of each first field as ``clip_name`` and ``align`` read it, or None when all are
    numbers before 2+ tabs (start/end columns); ``_Irregular`` for an empty field or other
    numbers (on two-field lines they may name clips 1.wav .. 12.wav: ``clip_names`` decides)."""
    joined = "\n" + "\n".join(firsts) + "\n"
    if " \n" in joined or "\n " in joined:
        firsts = list(map(str.strip, firsts))
        joined = "\n" + "\n".join(firsts) + "\n"
    numbers = 0
    if not joined.isascii() or _maybe_numbers(joined.encode("ascii")):
        numbers = sum(map(_is_number, firsts))
    if numbers == len(firsts) and tabs > 1:
        return None
    if numbers or not all(firsts):
        raise _Irregular
    if ("/" in joined and any(p in joined for p in _ODD_PATH)) or "\n.\n" in joined:
        firsts = list(map(_norm, firsts))
    return np.fromiter(map(hash, firsts), dtype=np.int64, count=len(firsts))


def _maybe_numbers(joined: bytes) -> bool:
    """Whether a line of ``joined`` (lines between newlines) may read as a number, or is empty."""
    lower = joined.lower()  # the words' endings first: rare in names, so the words are seldom sought
    words = any(e in lower for e in (b"inf\n", b"nan\n", b"infinity\n")) and any(w in lower for w in _NUMBER_WORDS)
    return words or b"\n\n" in joined.translate(None, b"0123456789+-._eE")


def _hashed_order(names: np.ndarray, entries: Sequence[str]) -> np.ndarray:
    """``align``'s answer from hashes of the names (Python's 64-bit ``hash``, fixed within a
    process), or ``_Irregular`` where ``align`` must decide: a name or key hash seen twice (a
    repeat, or a collision), or no kind of name that every line uses. A collision can only
    go unseen where a line names no clip and no line names the clip it collides with
    (~1e-7 at 2 M clips), where ``align`` would have refused the file."""
    line_sorted = np.argsort(names, kind="stable")
    sorted_names = names[line_sorted]
    if np.any(sorted_names[1:] == sorted_names[:-1]):
        raise _Irregular
    probe = [clip_keys(entries[i]) for i in range(min(len(entries), 64))]
    for kind in _KINDS:
        # A kind is used only if every entry has it and is named: a few entries that are
        # not rule it out without computing the kind for all of them.
        if not all(kind in k for k in probe):
            continue
        probe_keys = np.array([hash(k[kind]) for k in probe])
        if not np.array_equal(sorted_names[np.searchsorted(sorted_names, probe_keys) % len(names)], probe_keys):
            continue
        keys = _kind_hashes(entries, kind)
        entry_sorted = np.argsort(keys, kind="stable")
        # As many distinct names as entries: every entry named once iff the sorted hashes agree.
        if not np.array_equal(keys[entry_sorted], sorted_names):
            break  # shared or missing keys (align skips the kind), a collision or an entry not named
        order = np.empty(len(entries), dtype=np.int64)
        order[entry_sorted] = line_sorted
        return order
    raise _Irregular


def _kind_hashes(entries: Sequence[str], kind: str, chunk: int = 1 << 17) -> np.ndarray:
    """``hash(clip_keys(e).get(kind))`` of every entry, computing that kind only, from the
    file names (and folders, for paths); ``clip_keys`` itself where normpath changes them."""
    out = np.empty(len(entries), dtype=np.int64)
    for start in range(0, len(entries), chunk):
        folders, files = _folders_and_files(entries, start, min(len(entries), start + chunk), kind.startswith("path"))
        keys = list(_KINDS[kind](folders, files))
        plain = {f: _norm(f + "x") == f + "x" for f in set(folders or ())}
        if not all(plain.values()) or {"", ".", ".."}.intersection(files):
            for i, file in enumerate(files):
                if file in ("", ".", "..") or (folders and not plain[folders[i]]):
                    keys[i] = clip_keys(entries[start + i]).get(kind)
        out[start : start + len(files)] = np.fromiter(map(hash, keys), dtype=np.int64, count=len(files))
    return out


def _folders_and_files(entries: Sequence[str], start: int, end: int,
                       folders: bool) -> tuple[list[str] | None, list[str]]:
    """Entries ``start:end`` split after their last '/' (the folders only if asked for), from
    ``PackedEntries``' buffers without building each path."""
    if not isinstance(entries, PackedEntries):
        split = [entries[i].rpartition("/") for i in range(start, end)]
        return [d + s for d, s, _ in split] if folders else None, [f for _, _, f in split]
    dirs = list(map(entries.folders.__getitem__, entries.folder_of[start:end].tolist())) if folders else None
    cuts = entries.offsets[start : end + 1]  # a newline between names (none holds one): one split
    names = np.insert(entries.names[cuts[0] : cuts[-1]], cuts[1:-1] - cuts[0], ord("\n"))
    return dirs, names.tobytes().decode("utf-8").split("\n")


def _stems(files: list[str]) -> list[str]:
    """``os.path.splitext(f)[0]`` of each file name (no '/')."""
    return [p[0] if (p := f.rpartition("."))[1] and p[0].strip(".") else f for f in files]


def youtube_ids(stems: Iterable[str]) -> list[str | None]:
    """The YouTube id in each file stem ({YTID}_{start} or Y{YTID}[_...], AudioSet's file names;
    ids are 11 characters), or None. A list at a time: label files name 2 M clips this way."""
    return [s[1:12] if s[:1] == "Y" and s[12:13] in ("", "_") else s[:11] if s[11:12] == "_" else None
            for s in stems]


# The kinds of name a label line may use for entries, most specific first, from their
# folders (up to the last '/') and file names, where normpath changes neither. A YouTube id
# is in a stem's first 13 characters: the name's own when its extension starts later (most).
_KINDS = {"path": lambda d, f: map(str.__add__, d, f),
          "path without extension": lambda d, f: map(str.__add__, d, _stems(f)),
          "name": lambda d, f: f, "stem": lambda d, f: _stems(f),
          "youtube id": lambda d, f: youtube_ids(n if n.rfind(".") >= 13 else _stems([n])[0] for n in f)}


def clip_name(line: str) -> str | None:
    """The clip a label line names: its first field when the line has more than one, unless
    that field is a number (data2vec's AudioSet converter writes ``start<TAB>end<TAB>labels``)."""
    if "\t" not in line:
        return None
    first = line.split("\t", 1)[0].strip()
    return None if _is_number(first) else first


_NUMBER_CHARS = "0123456789+-._eEinfatyINFATY"  # every ASCII character float() reads, but spaces


def _is_number(field: str) -> bool:
    """float() reads it ('12', '0042', '1_2', 'nan', '1e3'); most names fail the cheaper
    character check first."""
    if field.isascii() and field.strip(_NUMBER_CHARS):
        return False
    try:
        float(field)
        return True
    except ValueError:
        return False


def _norm(name: str) -> str:
    return os.path.normpath(name).replace(os.sep, "/")


def clip_names(lines: list[str], entries: Sequence[str]) -> list[str | None]:
    """``clip_name`` of each line, except that if a two-field line's numeric first field names a
    clip of ``entries`` (clips ``1.wav .. 12.wav``), every two-field line's first field is a name:
    a number naming no clip is then reported, not the whole file read unchecked in manifest order."""
    ids = [clip_name(line) for line in lines]
    numeric = [n for n, (i, line) in enumerate(zip(ids, lines)) if i is None and line.count("\t") == 1]
    if numeric:
        known = {key for e in entries for key in clip_keys(e).values()}
        if any(_norm(lines[n].split("\t")[0].strip()) in known for n in numeric):
            for n in numeric:
                ids[n] = lines[n].split("\t")[0].strip()
    return ids


def clip_keys(entry: str) -> dict[str, str]:
    """The names a label line may use for a manifest entry, by kind, most specific first."""
    folder, slash, name = _norm(entry).rpartition("/")
    keys = {kind: next(iter(key([folder + slash], [name]))) for kind, key in _KINDS.items()}
    return {kind: k for kind, k in keys.items() if k is not None}  # None: no YouTube id in the name


def align(path: str, ids: list[str | None], entries: list[str], manifest: str) -> list[int]:
    """For each manifest entry, the index of the label line that names it, by the first of
    ``_KINDS`` that every line uses and no two entries share; else the first line naming no clip is reported."""
    missing = next((n for n, i in enumerate(ids, start=1) if not i), None)
    if missing is not None:
        raise LabelError(f"{path}:{missing}: no clip name before the labels (or a number), though other lines "
                         "name their clip; name every clip (its path as in the manifest) or none")
    names = [_norm(i) for i in ids]
    line_of: dict[str, int] = {}
    for n, (clip, name) in enumerate(zip(ids, names)):
        if name in line_of:
            raise LabelError(f"{path}:{n + 1}: clip {clip!r} is already labelled on line {line_of[name] + 1}; "
                             "label each clip once")
        line_of[name] = n
    entry_keys = [clip_keys(e) for e in entries]
    best: tuple[int, str, dict[str, int]] | None = None
    for kind in _KINDS:
        index = {k[kind]: i for i, k in enumerate(entry_keys) if kind in k}
        if len(index) != len(entries):  # some entries lack or share this kind of name
            continue
        hits = sum(name in index for name in names)
        if hits == len(names):
            return [line_of[k[kind]] for k in entry_keys]
        if best is None or hits > best[0]:
            best = (hits, kind, index)
    if best is None or best[0] == 0:
        raise LabelError(f"{path}:1: clip {ids[0]!r} is not an entry of {manifest} (compared with its paths, "
                         "file names and stems): the label file belongs to other clips; rewrite it "
                         "(mae-ast-prepare) or drop the clip column to label in manifest order")
    _, kind, index = best
    bad = next(n for n, name in enumerate(names) if name not in index)
    raise LabelError(f"{path}:{bad + 1}: clip {ids[bad]!r} is not an entry of {manifest} (other lines name "
                     f"entries by {kind}); the label and manifest files disagree: rewrite them together")


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
                         "keep one label per line, or label clips multi-label (task.multi_label=true; "
                         "mae-ast-probe without --single-label)")
    return labels


def write_label_descriptors(path: str, names: list[str], mids: list[str] | None = None) -> None:
    """Write ``label_descriptors.csv``. Without ``mids`` they come from ``default_mids`` (the
    name, so that tools keying on the mid column still find the classes)."""
    mids = default_mids(names) if mids is None else mids
    if len(mids) != len(names):
        raise ValueError(f"{len(names)} names but {len(mids)} mids")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows([i, mid, name] for i, (mid, name) in enumerate(zip(mids, names)))


def write_labels(path: str, rows: list[list[int]], ids: list[str] | None = None,
                 label_set: LabelSet | None = None) -> None:
    """Write ``{split}.lbl``: ``id<TAB>labels`` per clip (just the labels without ids), each
    label as ``label_set.token`` writes it (the index when no label set is given)."""
    if ids is not None and len(ids) != len(rows):
        raise ValueError(f"{len(rows)} label rows but {len(ids)} ids")
    tokens = [label_set.token(i) for i in range(label_set.num_classes)] if label_set else None
    with open(path, "w", encoding="utf-8") as f:
        for n, row in enumerate(rows):
            if not row:
                raise ValueError(f"row {n} has no label")
            labels = ",".join(tokens[int(i)] if tokens else str(int(i)) for i in row)
            f.write(f"{ids[n]}\t{labels}\n" if ids is not None else f"{labels}\n")


def default_mids(names: list[str]) -> list[str]:
    """Mids for classes that have none: the name, or ``class_<name>`` for a numeric name, so
    that a label file can always name a class without reading as another class's index."""
    return [f"class_{n}" if _INT.fullmatch(n.strip()) else n for n in names]


def class_order(names: Iterable[str]) -> list[str]:
    """The one class order of every writer: by number when every name is an integer (so
    folders 1, 2, 10 are classes 0, 1, 2), else by text."""
    names = set(names)
    if names and all(_INT.fullmatch(n.strip()) for n in names):
        return sorted(names, key=int)
    return sorted(names)
