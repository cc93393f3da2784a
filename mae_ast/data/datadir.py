"""Data folders as ``mae-ast-manifest`` and ``mae-ast-prepare`` write them (``{split}.tsv``,
plus ``{split}.lbl`` and ``label_descriptors.csv`` for labelled data): the folder walk and
header lengths, the one split policy, the leak check, and the writers, which own their
output folder (split files an earlier run left there are removed and named).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from . import identity
from .audio_io import (AUDIO_EXTENSIONS, SOUNDFILE_EXTENSIONS, AudioError, _stated_samples, check_path, named_failure,
                       pyav_stream)
from .labels import LabelSet, write_labels

SPLITS = ("train", "valid", "test")
# What a writer may leave in its folder for a split: removed together when the split goes.
SPLIT_FILES = ("{split}.tsv", "{split}.lbl", "missing_{split}.txt", "{split}.keys.npz")
DEFAULT_FRACTION = 0.1  # of valid, and of test, when an option leaves it out (prepare's folders, csv)


class SplitError(argparse.ArgumentTypeError, ValueError):
    """A split that cannot be written as asked; the message says what to change (argparse prints it too)."""


def find_audio(root: str, extensions: Iterable[str] = AUDIO_EXTENSIONS, absolute: bool = False) -> list[str]:
    """Paths relative to ``root`` (or absolute) of the files under it whose extension (".flac" or
    "flac") is in ``extensions``, sorted; hidden folders are not entered."""
    wanted = {"." + e.lower().lstrip(".") for e in extensions}
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(folder, name) for name in files if os.path.splitext(name)[1].lower() in wanted]
    return sorted(os.path.abspath(p) if absolute else os.path.relpath(p, root) for p in found)


def audio_length(path: str) -> int:
    """Length in samples at the file's own rate, from its header; ``AudioError`` if unreadable."""
    if "\t" in path or "\n" in path:
        raise AudioError(path, "its name holds a tab or newline, which a manifest line cannot")
    check_path(path)
    if os.path.splitext(path)[1].lower() in SOUNDFILE_EXTENSIONS:
        import soundfile as sf

        with named_failure(path, "read the header", "soundfile"):
            return int(sf.info(path).frames)
    # The stream's stated length, else the segment's (Matroska states none per stream), else decoded.
    # It may exceed the decoded one (Opus padding: 480384 vs 480000 for 10 s): the truncation check allows it.
    with pyav_stream(path, "read it") as (container, stream):
        if stream.duration and stream.time_base:
            return int(round(stream.duration * stream.time_base * stream.rate))
        return _stated_samples(container, stream) or sum(frame.samples for frame in container.decode(stream))


def split_name(text: str) -> str:
    """``train``/``valid``/``test`` from a user's split name (any case, spaces around); others are refused."""
    name = text.strip().lower()
    if name not in SPLITS:
        hint = " (valid is fairseq's name for a development split)" if name in ("dev", "val", "validation") else ""
        raise SplitError(f"split {text!r} is not one of {', '.join(SPLITS)}{hint}")
    return name


def check_fractions(valid: float | None, test: float | None) -> tuple[float, float]:
    """(valid, test), an omitted one (None) at ``DEFAULT_FRACTION``; a ``SplitError`` unless
    both are >= 0 and sum to at most 1 (train gets the rest)."""
    omitted = (o for o, f in (("--valid-percent", valid), ("--test-percent", test)) if f is None)
    hint = "".join(f" ({o} {DEFAULT_FRACTION:g} when omitted)" for o in omitted)
    valid, test = (DEFAULT_FRACTION if f is None else f for f in (valid, test))
    if not (0 <= valid and 0 <= test and valid + test <= 1):
        raise SplitError(f"--valid-percent {valid:g} + --test-percent {test:g}{hint}: each must be >= 0 and "
                         "their sum at most 1 (train gets the rest)")
    return valid, test


def hash_fraction(key: str, seed: int) -> float:
    """Where ``key`` falls in [0, 1), from a hash of the seed and the clip's name alone."""
    return identity.digest64(f"{seed}/{key}".encode("utf-8", "surrogateescape")) / 2.0**64


def split_indices(keys: Sequence[str], valid: float | None, test: float | None, seed: int,
                  groups: Sequence[int] | None = None) -> dict[str, list[int]]:
    """Indices of ``keys`` (unique paths relative to the data's root) for train / valid / test.
    Clip ``k`` goes to valid when ``hash_fraction(k, seed) < valid``, to test below ``valid +
    test``, else to train (Speech Commands' rule): adding clips moves no earlier clip, so an
    earlier checkpoint is never scored on clips it trained on; fractions hold on average.
    Two small-data exceptions move the fewest clips, those of hash nearest the other range:
    every class (``groups``) of 2+ clips keeps a train clip, and a split of positive fraction
    gets a clip from a class with another train clip. A fraction of 0 writes no such split;
    None is the default (``check_fractions``); an empty train split is a ``SplitError``."""
    valid, test = check_fractions(valid, test)
    groups = list(groups) if groups is not None else [0] * len(keys)
    where = [hash_fraction(k, seed) for k in keys]
    parts: dict[str, list[int]] = {"valid": [], "test": [], "train": []}
    for i, u in enumerate(where):
        parts["valid" if u < valid else "test" if u < valid + test else "train"].append(i)
    in_train = {groups[i] for i in parts["train"]}
    sizes = Counter(groups)
    for group in sorted(g for g, n in sizes.items() if n > 1 and g not in in_train):  # every class keeps a train clip
        held = [i for s in ("valid", "test") for i in parts[s] if groups[i] == group]
        moved = max(held, key=lambda i: where[i])
        parts["valid" if moved in parts["valid"] else "test"].remove(moved)
        parts["train"].append(moved)
    for split, fraction in (("valid", valid), ("test", test)):
        if fraction > 0 and not parts[split]:  # the train clip of lowest hash whose class keeps another
            counts = Counter(groups[i] for i in parts["train"])
            spare = [i for i in parts["train"] if counts[groups[i]] > 1]
            if spare:
                moved = min(spare, key=lambda i: where[i])
                parts["train"].remove(moved)
                parts[split].append(moved)
    if not parts["train"]:
        raise SplitError(f"no clip left for train out of {len(keys)} (valid {valid}, test {test}); "
                         "lower --valid-percent/--test-percent or add clips")
    kept = {"train": True, "valid": valid > 0, "test": test > 0}
    return {s: sorted(parts[s], key=lambda i: keys[i]) for s in SPLITS if kept[s]}


def check_disjoint(splits: dict[str, Sequence[str]], source: str) -> None:
    """No clip twice in a split or in train and an evaluation split; valid/test are disjoint or
    the same clips (ESC-50: both the held-out fold). Clips are compared by ``identity.clip_keys``
    (a symlink or byte copy is the clip). A leak is a ``SplitError`` naming both files."""
    sets: dict[str, set[str]] = {}
    for split, paths in splits.items():
        sets[split] = seen = set()
        for p in map(os.path.abspath, paths):
            if p in seen:
                raise SplitError(f"{source}: {p} is listed twice in {split}; list each clip once")
            seen.add(p)
    names = sorted(sets)
    pairs = [(a, b) for a in names for b in names
             if a < b and not ({a, b} == {"valid", "test"} and sets[a] == sets[b])]
    if not pairs:
        return
    keys = {s: identity.clip_keys(sorted(sets[s])) for s in names if any(s in pair for pair in pairs)}
    for a, b in pairs:
        for kind, k in (("are one file (same real path)", 0), ("hold the same bytes", 1)):
            found = _shared(sorted(sets[a]), keys[a][k], sorted(sets[b]), keys[b][k])
            if found:
                (pa, pb), count = found
                what = f"{pa} is in both {a} and {b}" if pa == pb else f"{pa} ({a}) and {pb} ({b}) {kind}"
                raise SplitError(f"{source}: {what}; {count} clip(s) of {a} are also in {b}: a clip must "
                                 "not be trained on and evaluated on; keep one copy, in one split")


def _shared(paths_a: list[str], keys_a: np.ndarray, paths_b: list[str], keys_b: np.ndarray
            ) -> tuple[tuple[str, str], int] | None:
    """The first clip of ``a`` whose key is in ``b``, with its partner, and how many share one."""
    order = np.argsort(keys_b, kind="stable")
    hits = np.flatnonzero(identity.overlap(keys_a, keys_b[order]))
    if not len(hits):
        return None
    first = hits[0]
    partner = order[np.searchsorted(keys_b[order], keys_a[first])]
    return (paths_a[first], paths_b[partner]), len(hits)


def remove_stale(out: str, writing: Iterable[str]) -> list[str]:
    """Delete, and return by path, the files in ``out`` of splits this run does not write (an
    earlier run's test.tsv would otherwise be scored while its clips sit in train)."""
    writing = set(writing)
    return _remove(out, [p.format(split=s) for s in SPLITS if s not in writing for p in SPLIT_FILES])


def _remove(out: str, names: Iterable[str]) -> list[str]:
    """Delete those of ``names`` that are files in ``out``; their paths."""
    removed = [path for path in (os.path.join(out, name) for name in names) if os.path.isfile(path)]
    for path in removed:
        os.remove(path)
    return removed


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder`` (or is it)."""
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([path, folder]) == folder


def relative_entry(path: str, root: str) -> str:
    """How a manifest writes ``path`` (a clip, or its root as the first line): relative to
    ``root`` when inside it (a folder holding its clips, KS1's ``_silence_``, can move), else absolute."""
    path = os.path.abspath(path)
    return os.path.relpath(path, root).replace(os.sep, "/") if inside(path, root) else path


def write_split(out: str, split: str, root: str, paths: Sequence[str], sizes: Sequence[int],
                labels: Sequence[list[int]] | None = None, label_set: LabelSet | None = None,
                missing: Sequence[str] | None = None) -> list[str]:
    """``{split}.tsv``, its ``{split}.keys.npz`` (``identity.write_sidecar``), with ``labels`` ``{split}.lbl``
    naming clips by the same entries, with ``missing`` (ids without a file) ``missing_{split}.txt``; the
    split's other ``SPLIT_FILES``, an earlier run's, are deleted (returned by path): they describe other clips."""
    unwritten = {"{split}.lbl": labels is None, "missing_{split}.txt": missing is None}
    removed = _remove(out, [p.format(split=split) for p in SPLIT_FILES if unwritten.get(p)])
    entries = [relative_entry(p, root) for p in paths]
    manifest = os.path.join(out, f"{split}.tsv")
    with open(manifest, "w", encoding="utf-8") as f:
        f.write(relative_entry(root, out) + "\n")
        f.writelines(f"{e}\t{int(n)}\n" for e, n in zip(entries, sizes))
    identity.write_sidecar(manifest, [os.path.abspath(p) for p in paths])
    if labels is not None:
        write_labels(os.path.join(out, f"{split}.lbl"), list(labels), entries, label_set)
    if missing is not None:
        with open(os.path.join(out, f"missing_{split}.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{i}\n" for i in missing)
    return removed
