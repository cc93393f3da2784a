"""A precomputed-fbank cache: every clip's features in one memory-mapped file per split, so
decoding (~35 ms per 10 s Opus clip per core) does not fall behind a GPU step. Per split:
``{split}.fbank.bin`` (float32/float16 frames of ``width`` columns, clips back to back);
``.idx.npy`` (int64 manifest line, first frame, frame count; count -1: unusable);
``.files.npy`` (int64 size and mtime ns of each clip when cached, -1 unreadable);
``.json`` (dtype, width, feature spec, the manifest's text key and real root, skip reasons).
A cache whose ``identity.Stamp`` is not current (manifest, clips' folder or any clip's size or
mtime changed) is refused: its features would silently be another audio's. Entries are found
by manifest line, so one cache serves readers with different length filters.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os

import numpy as np
import torch
from tqdm import tqdm

from . import identity
from .audio_io import AudioError
from .features import FeatureSpec


class CacheError(ValueError):
    """A cache that does not match its manifest, or is incomplete."""


def _paths(cache_dir: str, split: str) -> tuple[str, str, str, str]:
    base = os.path.join(cache_dir, f"{split}.fbank")
    return base + ".bin", base + ".idx.npy", base + ".json", base + ".files.npy"


_DATASET = None  # per worker process: the dataset whose get_features we call


def _init_worker(dataset, single_thread: bool = True) -> None:
    global _DATASET
    _DATASET = dataset
    if single_thread:  # pool workers: one core each
        torch.set_num_threads(1)


def _features(index: int) -> tuple[int, np.ndarray | None, str | None]:
    try:
        return index, _DATASET.get_features(index).numpy(), None
    except AudioError as err:
        return index, None, err.reason


def write_cache(dataset, split: str, cache_dir: str, workers: int = 1, dtype: str = "float32") -> dict:
    """Compute the features of every entry of ``dataset`` (a ``MAE_AST_Dataset``, whose
    manifest filters were applied) with its own ``get_features`` and write the cache."""
    os.makedirs(cache_dir, exist_ok=True)
    stamp = identity.Stamp.of(dataset.manifest_path, dataset.paths)  # before decoding, as write_sidecar
    bin_path, idx_path, meta_path, files_path = _paths(cache_dir, split)
    index = np.full((len(dataset), 3), -1, dtype=np.int64)
    index[:, 0] = dataset.lines
    skipped: dict[str, str] = {}
    offset = 0
    pool = multiprocessing.Pool(workers, _init_worker, (dataset,)) if workers > 1 else None
    if pool is None:
        _init_worker(dataset, single_thread=False)
    results = pool.imap(_features, range(len(dataset)), chunksize=4) if pool else map(_features, range(len(dataset)))
    tmp = bin_path + ".partial"
    with open(tmp, "wb") as out:
        for i, feat, reason in tqdm(results, total=len(dataset), desc=f"caching {split}", unit="clip"):
            if feat is None:
                skipped[dataset.paths[i]] = reason
                continue
            out.write(feat.astype(dtype).tobytes())
            index[i, 1:] = (offset, len(feat))
            offset += len(feat)
    if pool:
        pool.close()
        pool.join()
    os.replace(tmp, bin_path)  # only a complete cache gets the final name
    np.save(idx_path, index)
    np.save(files_path, stamp.stats)
    meta = {"dtype": dtype, "width": dataset.feature_spec.width, "sample_rate": dataset.feature_spec.sample_rate,
            "feature_spec": dataclasses.asdict(dataset.feature_spec),
            "manifest": os.path.abspath(dataset.manifest_path), "manifest_key": stamp.manifest_key, "root": stamp.root,
            "min_keep": dataset.min_keep, "max_keep": dataset.max_keep, "clips": len(dataset),
            "frames": offset, "skipped": skipped}
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    return meta


class FbankCache:
    """Read side: ``cache[i]`` is entry i's ``(frames, dim)`` float32 tensor, or raises
    ``AudioError`` with the reason it was left out."""

    def __init__(self, cache_dir: str, split: str, dataset) -> None:
        bin_path, idx_path, meta_path, files_path = _paths(cache_dir, split)
        for path in (bin_path, idx_path, meta_path):
            if not os.path.isfile(path):
                raise CacheError(f"{path}: missing; write the cache with mae-ast-cache")
        with open(meta_path) as f:
            self.meta = json.load(f)
        # Caches without these predate the feature spec in the metadata and the (n, 3) index too.
        if "manifest_key" not in self.meta or not os.path.isfile(files_path):
            raise CacheError(f"{meta_path}: written by an older mae-ast-cache that did not stamp its manifest and "
                             "audio files; rewrite it with mae-ast-cache")
        stamp = identity.Stamp(self.meta["manifest_key"], self.meta["root"], np.load(files_path))
        if change := stamp.manifest_change(dataset.manifest_path):
            raise CacheError(f"{meta_path}: {change}; rewrite it with mae-ast-cache")
        spec, written = dataset.feature_spec, FeatureSpec(**self.meta["feature_spec"])
        if written != spec:
            raise CacheError(f"{meta_path}: written with {written.describe()}, the task asks {spec.describe()}; "
                             "rewrite it with mae-ast-cache (--feature-dim/--deltas/--sample-rate as the task)")
        table = np.load(idx_path)  # found by manifest line
        row_of = {int(line): r for r, line in enumerate(table[:, 0])}
        absent = [line for line in dataset.lines if line not in row_of]
        if absent:
            raise CacheError(
                f"{idx_path}: {len(absent)} of the {len(dataset)} entries {dataset.manifest_path} keeps are not in "
                f"the cache (e.g. line {absent[0]}); it was written with --min-sample-size "
                f"{self.meta['min_keep']} / --max-keep-size {self.meta['max_keep']}: rewrite it with "
                "mae-ast-cache without them (the default caches every entry)")
        rows = np.array([row_of[line] for line in dataset.lines], dtype=np.int64)
        self.index = table[rows, 1:]
        if change := dataclasses.replace(stamp, stats=stamp.stats[rows]).clips_change(dataset.paths, dataset.lines):
            raise CacheError(f"{meta_path}: {change}: its features would be the old audio's; rewrite it with "
                             "mae-ast-cache")
        self.dim = self.meta["width"]
        self.bin_path, self.dtype = bin_path, np.dtype(self.meta["dtype"])
        self.paths = dataset.paths
        self._frames = None  # opened lazily: each dataloader worker maps the file itself

    def __getitem__(self, i: int) -> torch.Tensor:
        start, count = self.index[i]
        if count < 0:
            path = self.paths[i]
            raise AudioError(path, self.meta["skipped"].get(path, "left out of the cache"))
        if self._frames is None:
            self._frames = np.memmap(self.bin_path, dtype=self.dtype, mode="r").reshape(-1, self.dim)
        # a copy: the memmap is read-only, and augmentation may write into the features
        return torch.from_numpy(np.array(self._frames[start : start + count], dtype=np.float32))

    def __getstate__(self) -> dict:  # never pickle a live memmap into workers
        state = dict(self.__dict__)
        state["_frames"] = None
        return state
