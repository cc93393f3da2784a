"""A clip's identity, which survives renaming, symlinking and copying: two uint64 keys per
file, the one definition every leak check and provenance record uses. ``path_key`` hashes
the real path (a symlink is its target); ``content_key`` hashes the size and three
``SAMPLE_BYTES`` samples, not every byte: at AudioSet scale (2 M clips, ~0.6 TB) that would
be a full read of the corpus, and two different recordings agreeing in size and all three
samples are needed to collide. A re-encoded copy is another file to any byte hash.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .manifest import root_folder

logger = logging.getLogger(__name__)

SAMPLE_BYTES = 64 * 1024


def digest64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def real_path(path: str) -> str:
    """The absolute path, every symlink resolved: one name per file."""
    return os.path.realpath(os.path.abspath(path))


def path_key(path: str) -> int:
    """64-bit hash of ``real_path(path)``."""
    return digest64(real_path(path).encode("utf-8", "surrogateescape"))


def content_key(path: str) -> int:
    """64-bit hash of the file's size and its first, middle and last ``SAMPLE_BYTES``
    (the whole file when it is shorter than three samples). ``OSError`` if unreadable."""
    size = os.path.getsize(path)
    h = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=8)
    with open(path, "rb") as f:
        if size <= 3 * SAMPLE_BYTES:
            h.update(f.read())
        else:
            for offset in (0, (size - SAMPLE_BYTES) // 2, size - SAMPLE_BYTES):
                f.seek(offset)
                h.update(f.read(SAMPLE_BYTES))
    return int.from_bytes(h.digest(), "little")


def clip_keys(paths: Sequence[str], workers: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(path_keys, content_keys)`` of ``paths`` in their order, as uint64 arrays. A file
    that cannot be read gets content key 0, which ``overlap`` never matches."""

    def both(p: str) -> tuple[int, int]:
        try:
            return path_key(p), content_key(p)
        except OSError:
            return path_key(p), 0

    # Threads: the work is file reads and hashlib, which releases the GIL on large buffers.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pairs = list(pool.map(both, paths, chunksize=256)) if len(paths) > 64 else [both(p) for p in paths]
    keys = np.array(pairs, dtype=np.uint64).reshape(-1, 2)
    return keys[:, 0].copy(), keys[:, 1].copy()


def overlap(keys: np.ndarray, other_sorted: np.ndarray) -> np.ndarray:
    """Boolean mask of ``keys`` found in the sorted array ``other_sorted`` (vectorised:
    a 2 M x 2 M check takes well under a second)."""
    if len(other_sorted) == 0 or len(keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    at = np.searchsorted(other_sorted, keys)
    at[at == len(other_sorted)] = 0
    return (other_sorted[at] == keys) & (keys != 0)


def sidecar_path(manifest_path: str) -> str:
    """``{split}.keys.npz`` beside ``{split}.tsv``: its clips' keys and ``Stamp``, so a run reads
    2 M clips' keys in under a second instead of rehashing."""
    return manifest_path.removesuffix(".tsv") + ".keys.npz"


def text_key(path: str) -> int:
    """64-bit hash of a text file's bytes (a manifest or label file's fingerprint)."""
    with open(path, "rb") as f:
        return digest64(f.read())


def file_stats(paths: Sequence[str]) -> np.ndarray:
    """(N, 2) int64 size and mtime ns of each file; -1 for a file that cannot be stat'ed."""
    stats = np.full((len(paths), 2), -1, np.int64)
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            continue
        stats[i] = st.st_size, st.st_mtime_ns
    return stats


@dataclass(frozen=True)
class Stamp:
    """What a manifest's per-clip record (keys sidecar, fbank cache) was computed from, the one rule
    for its being current: the manifest's ``text_key``, its root's real path (``cp -a`` keeps text,
    sizes and mtimes, but relative entries name other files) and (N, 2) clip sizes and mtimes ns."""

    manifest_key: int
    root: str
    stats: np.ndarray

    @classmethod
    def read(cls, saved) -> Stamp:
        """From the arrays ``arrays()`` gave, as loaded from an npz (``KeyError`` if absent)."""
        return cls(int(saved["manifest_key"]), str(saved["root"]), np.stack([saved["sizes"], saved["mtimes"]], axis=1))

    def arrays(self) -> dict[str, np.ndarray]:
        """The stamp as npz fields (beside a record's own arrays)."""
        return {"sizes": self.stats[:, 0], "mtimes": self.stats[:, 1],
                "manifest_key": np.uint64(self.manifest_key), "root": np.str_(self.root)}

    @classmethod
    def of(cls, manifest_path: str, paths: Sequence[str]) -> Stamp:
        """Now. The root is ``manifest.root_folder`` of the manifest's first line."""
        with open(manifest_path, "rb") as f:
            text = f.read()
        first = text.split(b"\n", 1)[0].decode("utf-8-sig", "surrogateescape").strip()
        root = real_path(root_folder(manifest_path, first))
        return cls(digest64(text), root, file_stats(paths))

    def manifest_change(self, manifest_path: str) -> str | None:
        """None while the manifest is the same text in the same place; else what changed."""
        now = Stamp.of(manifest_path, [])
        if now.manifest_key != self.manifest_key:
            return f"written for another version of {manifest_path}"
        return None if now.root == self.root else (f"computed from the audio under {self.root}, but "
                                                   f"{manifest_path}'s clips are under {now.root} (an "
                                                   "identical manifest in another folder)")

    def clips_change(self, paths: Sequence[str], lines: Sequence[int] | None = None,
                     missing_ok: bool = False) -> str | None:
        """None while ``paths`` are the files stamped (a stat each: seconds for 2 M); else what
        changed, with the first one's manifest line when ``lines`` are given. ``missing_ok``: a
        file gone since is not a change (the record made from it stays usable)."""
        if len(paths) != len(self.stats):
            return f"computed for {len(self.stats)} clips, not {len(paths)}"
        now = file_stats(paths)
        changed = np.flatnonzero((self.stats != now).any(axis=1) & ((now[:, 0] >= 0) | (not missing_ok)))
        if not len(changed):
            return None
        (was, _), (size, _) = self.stats[changed[0]], now[changed[0]]
        what = ("deleted since" if size < 0 else "created since" if was < 0 else
                f"size {was} -> {size} bytes" if was != size else "same size, modified since")
        line = f"manifest line {lines[changed[0]]}: " if lines is not None else ""
        return f"{len(changed)} of {len(paths)} clips changed since, e.g. {paths[changed[0]]} ({line}{what})"


def write_sidecar(manifest_path: str, paths: Sequence[str]) -> str:
    """Hash ``paths`` (the manifest's clips, in its order) and write the sidecar; its path."""
    stamp = Stamp.of(manifest_path, paths)  # before hashing: a clip rewritten meanwhile reads as changed
    return _save_sidecar(manifest_path, stamp, *clip_keys(paths))


def _save_sidecar(manifest_path: str, stamp: Stamp, pk: np.ndarray, ck: np.ndarray) -> str:
    out = sidecar_path(manifest_path)
    tmp = out + ".tmp.npz"
    np.savez(tmp, path_keys=pk, content_keys=ck, **stamp.arrays())
    os.replace(tmp, out)
    return out


def manifest_keys(manifest_path: str, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(path_keys, content_keys)`` of a manifest's clips: from its sidecar while its ``Stamp``
    is current, else hashed now (and a stale sidecar rewritten, so the next run reads it)."""
    side = sidecar_path(manifest_path)
    try:
        with np.load(side) as z:
            stamp = Stamp.read(z)
            stale = stamp.manifest_change(manifest_path) or stamp.clips_change(paths)
            if not stale:
                return z["path_keys"].copy(), z["content_keys"].copy()
    except FileNotFoundError:
        return clip_keys(paths)
    except (OSError, KeyError, ValueError) as err:  # unreadable, or from before roots were stamped
        stale = f"unreadable or older ({type(err).__name__}: {err})"
    # At AudioSet scale hashing reads ~0.4 TB: once, not at every run.
    logger.warning(f"{side}: stale ({stale}); hashing {len(paths)} clips and rewriting it")
    stamp = Stamp.of(manifest_path, paths)
    pk, ck = clip_keys(paths)
    try:
        _save_sidecar(manifest_path, stamp, pk, ck)
    except OSError as err:
        logger.warning(f"{side}: cannot rewrite it ({err}): every run will hash these clips again")
    return pk, ck
