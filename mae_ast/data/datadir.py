"""Data folders as the tools write them: audio found under a folder, split into train /
valid / test, and written as ``{split}.tsv`` (plus ``{split}.lbl`` and
``label_descriptors.csv`` for labelled data; see ``manifest`` and ``labels``).

One home for what ``mae-ast-manifest`` and ``mae-ast-prepare`` share:

* ``find_audio`` / ``audio_length``: the folder walk and the header length of a file;
* ``split_indices``: the one split policy (seeded, stratified by class when classes are
  given, a clip for every asked split when one can be spared, never an empty train split);
* ``check_disjoint``: no clip twice in a split, none in train and an evaluation split;
* ``write_split`` / ``remove_stale``: the writers own their output folder, so split files
  an earlier run left there (whose clips may now be in train) are removed and named.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence

from .audio_io import AUDIO_EXTENSIONS, SOUNDFILE_EXTENSIONS, AudioError
from .labels import LabelSet, write_labels

SPLITS = ("train", "valid", "test")
# What a writer may leave in its folder for a split: removed together when the split goes.
SPLIT_FILES = ("{split}.tsv", "{split}.lbl", "missing_{split}.txt")


class SplitError(ValueError):
    """A split that cannot be written as asked; the message says what to change."""


def find_audio(root: str, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[str]:
    """Relative paths of the files under ``root`` whose extension (".flac" or "flac") is in
    ``extensions``, sorted; hidden folders are not entered."""
    wanted = {"." + e.lower().lstrip(".") for e in extensions}
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.relpath(os.path.join(folder, name), root) for name in files
                  if os.path.splitext(name)[1].lower() in wanted]
    return sorted(found)


def audio_length(path: str) -> int:
    """Length in samples at the file's own rate, from its header; ``AudioError`` if unreadable."""
    if not os.path.isfile(path):
        raise AudioError(path, "is a directory" if os.path.isdir(path) else "file not found")
    if "\t" in path or "\n" in path:
        raise AudioError(path, "its name holds a tab or newline, which a manifest line cannot")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    if os.path.splitext(path)[1].lower() in SOUNDFILE_EXTENSIONS:
        import soundfile as sf

        try:
            return int(sf.info(path).frames)
        except Exception as err:
            raise AudioError(path, f"soundfile could not read the header ({err})") from err
    return _container_length(path)


def _container_length(path: str) -> int:
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(path, "container has no audio stream")
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return int(round(stream.duration * stream.time_base * stream.rate))
            return sum(frame.samples for frame in container.decode(stream))  # no duration in the header
    except AudioError:
        raise
    except Exception as err:
        raise AudioError(path, f"PyAV could not read it ({err})") from err


def split_name(text: str) -> str:
    """``train``/``valid``/``test`` from a user's split name (any case); others are refused."""
    name = text.strip().lower()
    if name not in SPLITS:
        hint = " (valid is fairseq's name for a development split)" if name in ("dev", "val", "validation") else ""
        raise SplitError(f"split {text!r} is not one of {', '.join(SPLITS)}{hint}")
    return name


def split_indices(keys: Sequence[str], valid: float, test: float, seed: int,
                  groups: Sequence[int] | None = None) -> dict[str, list[int]]:
    """Indices of ``keys`` (unique, sortable ids: paths) for train / valid / test.

    Each group (a class; one group without ``groups``) is shuffled by a string seed (stable
    across runs and Python versions) and gives ``round(n * fraction)`` clips to valid and
    test, at most ``n - 1`` together so that every group keeps a train clip. A split asked
    for with a positive fraction gets at least one clip (taken from the largest group that
    can spare one); a fraction of 0 writes no such split. An empty train split is an error."""
    if not (0 <= valid and 0 <= test and valid + test <= 1):
        raise SplitError(f"valid {valid} + test {test}: fractions must be >= 0 and sum to at most 1")
    groups = list(groups) if groups is not None else [0] * len(keys)
    members: dict[int, list[int]] = {}
    for i in sorted(range(len(keys)), key=lambda i: keys[i]):
        members.setdefault(groups[i], []).append(i)
    parts: dict[str, list[int]] = {"valid": [], "test": [], "train": []}
    for group, idx in sorted(members.items()):
        random.Random(f"{seed}/{group}").shuffle(idx)
        n_valid, n_test = round(len(idx) * valid), round(len(idx) * test)
        while len(idx) > 1 and n_valid + n_test >= len(idx):  # every class keeps a train clip
            n_valid, n_test = (n_valid - 1, n_test) if n_valid >= n_test else (n_valid, n_test - 1)
        parts["valid"] += idx[:n_valid]
        parts["test"] += idx[n_valid : n_valid + n_test]
        parts["train"] += idx[n_valid + n_test :]
    for split, fraction in (("valid", valid), ("test", test)):
        if fraction > 0 and not parts[split]:
            _spare_one(parts, split, groups)
    if not parts["train"]:
        raise SplitError(f"no clip left for train out of {len(keys)} (valid {valid}, test {test}); "
                         "lower --valid-percent/--test-percent or add clips")
    kept = {"train": True, "valid": valid > 0, "test": test > 0}
    return {s: sorted(parts[s], key=lambda i: keys[i]) for s in SPLITS if kept[s]}


def _spare_one(parts: dict[str, list[int]], split: str, groups: list[int]) -> None:
    """Move one train clip of the largest group that keeps another in train."""
    counts: dict[int, int] = {}
    for i in parts["train"]:
        counts[groups[i]] = counts.get(groups[i], 0) + 1
    group = max((g for g, c in counts.items() if c > 1), key=lambda g: counts[g], default=None)
    if group is not None:
        moved = next(i for i in parts["train"] if groups[i] == group)
        parts["train"].remove(moved)
        parts[split].append(moved)


def check_disjoint(splits: dict[str, Sequence[str]], source: str) -> None:
    """No clip (absolute path) twice in a split, none both in train and in an evaluation split,
    and valid/test either disjoint or the same clips (ESC-50's protocol: valid = test = the
    held-out fold). A leak is a ``SplitError`` naming the clip."""
    sets: dict[str, set[str]] = {}
    for split, paths in splits.items():
        sets[split] = seen = set()
        for p in map(os.path.abspath, paths):
            if p in seen:
                raise SplitError(f"{source}: {p} is listed twice in {split}; list each clip once")
            seen.add(p)
    names = sorted(sets)
    for a in names:
        for b in names:
            if a < b and sets[a] & sets[b] and not ({a, b} == {"valid", "test"} and sets[a] == sets[b]):
                clip = sorted(sets[a] & sets[b])[0]
                raise SplitError(f"{source}: {clip} is in both {a} and {b} ({len(sets[a] & sets[b])} clip(s) "
                                 "shared): a clip must not be trained on and evaluated on; fix the split")


def remove_stale(out: str, writing: Iterable[str]) -> list[str]:
    """Delete the split files in ``out`` that belong to splits this run does not write (an
    earlier run's test.tsv would otherwise be scored while its clips sit in train); the
    files removed, by name."""
    writing = set(writing)
    removed = []
    for split in SPLITS:
        if split in writing:
            continue
        for pattern in SPLIT_FILES:
            path = os.path.join(out, pattern.format(split=split))
            if os.path.isfile(path):
                os.remove(path)
                removed.append(os.path.basename(path))
    return removed


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder`` (or is it)."""
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([path, folder]) == folder


def relative_entry(path: str, root: str) -> str:
    """How a manifest writes ``path``: relative to ``root`` when inside it, else absolute."""
    path = os.path.abspath(path)
    return os.path.relpath(path, root).replace(os.sep, "/") if inside(path, root) else path


def write_split(out: str, split: str, root: str, paths: Sequence[str], sizes: Sequence[int],
                labels: Sequence[list[int]] | None = None, label_set: LabelSet | None = None) -> None:
    """``{split}.tsv`` (root line, then ``entry<TAB>samples``) and, with ``labels``,
    ``{split}.lbl`` whose lines name their clip by the same entry (so readers can check
    that each label belongs to its clip)."""
    entries = [relative_entry(p, root) for p in paths]
    with open(os.path.join(out, f"{split}.tsv"), "w", encoding="utf-8") as f:
        f.write(os.path.abspath(root) + "\n")
        f.writelines(f"{e}\t{int(n)}\n" for e, n in zip(entries, sizes))
    if labels is not None:
        write_labels(os.path.join(out, f"{split}.lbl"), list(labels), entries, label_set)
