"""The original's ``{split}.tsv`` manifests (format: README, "Your own data"). Entries are
kept packed (folders once, file names in one bytes buffer, numbers in numpy arrays): at
2 M entries Python lists cost ~700 MB per rank, and every forked dataloader worker would
copy the pages of each string it reads (reading writes its reference count).
"""

from __future__ import annotations

import array
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file and line."""


class PackedEntries(Sequence[str]):
    """Manifest paths as written, packed: entry ``i`` is ``folders[folder_of[i]]`` followed
    by bytes ``offsets[i]:offsets[i + 1]`` of ``names`` (UTF-8)."""

    def __init__(self, folders: list[str], folder_of: np.ndarray, names: np.ndarray, offsets: np.ndarray) -> None:
        self.folders, self.folder_of, self.names, self.offsets = folders, folder_of, names, offsets

    def __len__(self) -> int:
        return len(self.folder_of)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"entry {i} out of range ({len(self)} entries)")
        name = self.names[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("utf-8")
        return self.folders[self.folder_of[i]] + name

    def __iter__(self) -> Iterator[str]:  # its own loop: Sequence's is slower over 2 M paths
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        return self.folder_of.nbytes + self.names.nbytes + self.offsets.nbytes + sum(len(f) for f in self.folders)


class JoinedPaths(Sequence[str]):
    """Full paths: each entry joined to the manifest's root on access (an absolute entry
    stays as written, as ``os.path.join`` does)."""

    def __init__(self, root: str, entries: PackedEntries) -> None:
        self.root, self.entries = root, entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [os.path.join(self.root, e) for e in self.entries[i]]
        return os.path.join(self.root, self.entries[i])

    def __iter__(self) -> Iterator[str]:
        return (os.path.join(self.root, e) for e in self.entries)


class _Packer:
    """Builds a ``PackedEntries`` line by line without a Python object per entry."""

    def __init__(self) -> None:
        self.folder_id: dict[str, int] = {}
        self.folder_of = array.array("i")
        self.names = bytearray()
        self.offsets = array.array("q", [0])

    def add(self, entry: str) -> None:
        cut = entry.rfind("/") + 1
        self.folder_of.append(self.folder_id.setdefault(entry[:cut], len(self.folder_id)))
        self.names += entry[cut:].encode("utf-8")
        self.offsets.append(len(self.names))

    def done(self) -> PackedEntries:
        folders = sorted(self.folder_id, key=self.folder_id.get)
        offsets = np.frombuffer(self.offsets, dtype=np.int64).copy()
        if offsets[-1] < 2**31:
            offsets = offsets.astype(np.int32)  # halves the offsets below 2 GB of names
        return PackedEntries(folders, np.frombuffer(self.folder_of, dtype=np.int32).copy(),
                             np.frombuffer(bytes(self.names), dtype=np.uint8), offsets)


@dataclass
class Manifest:
    root: str
    entries: PackedEntries  # paths as written, which label files use to name clips
    sizes: np.ndarray  # (N,) int64 length in samples, as written in the manifest
    lines: np.ndarray  # (N,) int32 1-based manifest line of each entry, for error messages
    n_short: int = 0  # entries left out by min_keep
    n_long: int = 0  # entries left out by max_keep
    paths: JoinedPaths = field(init=False)  # full paths, root joined

    def __post_init__(self) -> None:
        self.paths = JoinedPaths(self.root, self.entries)

    def __len__(self) -> int:
        return len(self.sizes)


def root_folder(manifest_path: str, first_line: str) -> str:
    """The folder a manifest's entries are under, from its first line (stripped): relative to
    the manifest's folder, not the working directory (fairseq-hydra-train changes it)."""
    return os.path.join(os.path.dirname(os.path.abspath(manifest_path)), first_line)


def read_manifest(manifest_path: str, min_keep: int | None = None, max_keep: int | None = None) -> Manifest:
    """Entries shorter than ``min_keep`` or longer than ``max_keep`` samples are skipped and
    counted, as the original did; a malformed line is a ``ManifestError`` naming it."""
    if not os.path.isfile(manifest_path):
        raise ManifestError(f"{manifest_path}: manifest not found")
    with open(manifest_path, encoding="utf-8-sig") as f:  # -sig: a Windows editor's BOM
        root = f.readline().strip()
        if not root:
            raise ManifestError(f"{manifest_path}:1: first line must be the root folder")
        root = root_folder(manifest_path, root)
        if not os.path.isdir(root):
            # Every clip would be skipped as missing and fairseq would train on nothing.
            raise ManifestError(f"{manifest_path}:1: root folder {root} does not exist; the first line "
                                "must be the folder the audio paths are relative to")
        packer, sizes, lines = _Packer(), array.array("q"), array.array("i")
        n_short = n_long = 0
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            items = line.rstrip("\n").split("\t")
            if len(items) != 2 or not items[1].strip().isdigit():
                raise ManifestError(f"{manifest_path}:{lineno}: expected 'path<TAB>length_in_samples', "
                                    f"got {line.strip()!r}")
            size = int(items[1])
            if min_keep is not None and size < min_keep:
                n_short += 1
            elif max_keep is not None and size > max_keep:
                n_long += 1
            else:
                packer.add(items[0])
                sizes.append(size)
                lines.append(lineno)
    sizes = np.frombuffer(sizes, dtype=np.int64).copy()
    logger.info(
        f"{manifest_path}: max_keep={max_keep}, min_keep={min_keep}, loaded {len(sizes)}, "
        f"skipped {n_short} short and {n_long} long"
        + (f", longest-loaded={sizes.max()}, shortest-loaded={sizes.min()}" if len(sizes) else "")
    )
    return Manifest(root, packer.done(), sizes, np.frombuffer(lines, dtype=np.int32).copy(), n_short, n_long)
