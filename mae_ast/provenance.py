"""A checkpoint's provenance record: which clips it was trained (and selected) on, per split read
(``split_record``), so a tool can show that a number is clean. A classifier's record also carries
its encoder's pretraining record (``"unknown"`` when that checkpoint predates records, as the
released ones do; ``"none"`` for a random-init encoder).

It lives in ``task_state`` (fairseq saves ``FairseqTask.state_dict()`` in every checkpoint).
Up to ``INLINE_MAX_CLIPS`` clips the keys stay inline (int64 tensors, for ``weights_only``), so a
copied checkpoint is self-contained; above, they go to one content-addressed, fingerprinted
``<save_dir>/provenance/<digest>.npz``, as 32 MB at AudioSet scale (2 M clips x 2 keys x 8 bytes)
would otherwise be repeated in every checkpoint (last, best, each epoch's).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any
from collections.abc import Sequence

import numpy as np
import torch

from .data import identity

RECORD_VERSION = 1
# 100 k clips x 2 keys x 8 bytes = 1.6 MB inline; above that, the keys file.
INLINE_MAX_CLIPS = 100_000
KEY_KINDS = ("path_keys", "content_keys")
UNKNOWN, NONE = "unknown", "none"
SUMMARY_FIELDS = ("manifest", "manifest_key", "labels", "labels_key", "n_clips", "keys_digest")


class ProvenanceError(ValueError):
    """A record whose keys file is missing or altered; the message names it."""


def hex64(value: int) -> str:
    return f"{int(value) & (2**64 - 1):016x}"


def _digest(arrays: Sequence[np.ndarray]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.uint64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def checkpoint_hash(path: str) -> str:
    """``identity.content_key`` of the file (its size and three 64 KiB reads): cheap on a
    1 GB checkpoint, and two saves of a run differ in size or in those bytes."""
    return hex64(identity.content_key(path))


def split_record(manifest_path: str, label_path: str | None = None) -> dict:
    """One split's record from its manifest (and label file): real paths, their text fingerprints,
    the clip count and the sorted unique ``identity`` path and content keys (numpy)."""
    from .data.manifest import read_manifest

    manifest_path = identity.real_path(manifest_path)
    manifest = read_manifest(manifest_path)
    path_keys, content_keys = identity.manifest_keys(manifest_path, manifest.paths)
    labels = identity.real_path(label_path) if label_path and os.path.isfile(label_path) else None
    pk, ck = np.unique(path_keys), np.unique(content_keys[content_keys != 0])
    with open(manifest_path, "rb") as f:
        text = f.read()
    # The entries after the root line: the same in a moved or copied data folder.
    entries_key = np.array([identity.digest64(text.partition(b"\n")[2])], np.uint64)
    return {"manifest": manifest_path, "manifest_key": hex64(identity.digest64(text)),
            "labels": labels, "labels_key": hex64(identity.text_key(labels)) if labels else None,
            "n_clips": len(manifest.paths), "keys_digest": _digest([pk, ck]),
            "content_digest": _digest([content_keys, entries_key]), "path_keys": pk, "content_keys": ck}


def build_record(kind: str, data: str, splits: dict[str, tuple[str, str | None]], train_subset: str,
                 valid_subsets: Sequence[str], pretraining: dict | None = None) -> dict:
    """The record of a ``kind`` (``pretraining``/``finetuning``) run reading ``splits`` (name ->
    (manifest, label file or None)); ``pretraining``: a classifier's ``pretraining_record``."""
    record = {"version": RECORD_VERSION, "kind": kind, "data": identity.real_path(data),
              "train_subset": train_subset, "valid_subsets": list(valid_subsets),
              "splits": {name: split_record(m, lbl) for name, (m, lbl) in splits.items()}}
    if pretraining is not None:
        record["pretraining"] = pretraining
    return record


def pretraining_record(checkpoint: str | None) -> dict:
    """What a classifier's encoder was pretrained on: the pretraining checkpoint's own
    record (keys loaded), ``status: unknown`` when it has none, ``none`` for random init."""
    if not checkpoint:
        return {"status": NONE}
    from .checkpoints import CheckpointError, read_checkpoint

    path = identity.real_path(checkpoint)
    if os.path.isdir(path):  # an mae-ast-export-hf folder: weights and config only
        return {"status": UNKNOWN, "checkpoint": path, "reason": "an exported folder holds no provenance record"}
    try:  # mmap: only the task state is read; a legacy (non-zip) file cannot be mapped
        state = read_checkpoint(path, mmap=True)
    except CheckpointError:
        state = read_checkpoint(path)
    head = {"checkpoint": path, "checkpoint_hash": checkpoint_hash(path)}
    try:
        record = load(state, path)
    except ProvenanceError as err:
        return {"status": UNKNOWN, **head, "reason": str(err)}
    if record is None:
        return {"status": UNKNOWN, **head, "reason": "the pretraining checkpoint predates provenance records"}
    record.pop("pretraining", None)
    return {"status": "recorded", **head, "record": record}


def _split_records(record: dict):
    """``(prefix of its array names, record)`` of the record and of its pretraining record."""
    yield "", record
    pre = (record.get("pretraining") or {}).get("record")
    if pre:
        yield "pretraining/", pre


def _arrays(record: dict) -> dict[str, np.ndarray]:
    """Every key array of ``_split_records``, by a flat name."""
    return {f"{prefix}{name}/{kind}": split[kind] for prefix, rec in _split_records(record)
            for name, split in (rec.get("splits") or {}).items() for kind in KEY_KINDS
            if isinstance(split.get(kind), np.ndarray)}


def to_state(record: dict, save_dir: str | None = None) -> dict:
    """The record as plain types for ``task_state``, its keys inline or, when large and there is a
    ``save_dir``, in a keys file (the module docstring)."""
    arrays = _arrays(record)
    total = sum(len(a) for a in arrays.values()) // 2
    digest = _digest([arrays[k] for k in sorted(arrays)])
    state = _strip(record)
    if total <= INLINE_MAX_CLIPS or save_dir is None:
        state["keys"] = {k: torch.from_numpy(np.ascontiguousarray(a, dtype=np.uint64).view(np.int64))
                         for k, a in arrays.items()}
    else:
        folder = os.path.join(os.path.abspath(save_dir), "provenance")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{digest}.npz")
        if not os.path.isfile(path):  # content-addressed: written once per record
            tmp = path + f".{os.getpid()}.tmp.npz"
            # Sorted keys as their gaps (~44 bits each at 2 M clips), deflated: ~25 MB instead of 32.
            # ``np.cumsum`` (``load``) inverts them, uint64 arithmetic wrapping alike both ways.
            np.savez_compressed(tmp, **{k.replace("/", "__"): np.diff(a.astype(np.uint64), prepend=np.uint64(0))
                                        for k, a in arrays.items()})
            os.replace(tmp, path)
        state["keys_file"] = path
    state["keys_digest"] = digest
    return state


def _head(pre: dict) -> dict:
    """A pretraining entry without its record."""
    return {k: v for k, v in pre.items() if k != "record"}


def _pretraining_summary(pre: dict) -> dict:
    """A pretraining entry without its record, with the record's summary when there is one."""
    return {**_head(pre), **(_summary(pre["record"]) if pre.get("record") else {})}


def _strip(record: dict) -> dict:
    """A deep copy of the record's small part (no key arrays)."""
    out = {k: v for k, v in record.items() if k not in ("splits", "pretraining")}
    out["splits"] = {n: {k: v for k, v in s.items() if k not in KEY_KINDS} for n, s in record["splits"].items()}
    pre = record.get("pretraining")
    if pre is not None:
        out["pretraining"] = _head(pre)
        if pre.get("record"):
            out["pretraining"]["record"] = _strip(pre["record"])
    return out


def _record_state(state: dict) -> dict | None:
    """The stored record of a checkpoint dict (its ``task_state``), or a record itself."""
    if "version" in state and "splits" in state:
        return state
    task_state = state.get("task_state") or {}
    return task_state.get("provenance") if isinstance(task_state, dict) else None


def load(state: dict, checkpoint_path: str | None = None) -> dict | None:
    """The record of a checkpoint dict, key arrays (numpy uint64) restored; None when it has none."""
    stored = _record_state(state)
    if stored is None:
        return None
    if "keys" in stored:
        arrays = {k: v.numpy().view(np.uint64) if isinstance(v, torch.Tensor) else np.asarray(v, np.uint64)
                  for k, v in stored["keys"].items()}
    else:  # where the record names it, else in provenance/ beside the checkpoint (a moved run)
        candidates = [stored["keys_file"]]
        if checkpoint_path:
            candidates.append(os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), "provenance",
                                           os.path.basename(stored["keys_file"])))
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is None:
            raise ProvenanceError(f"{checkpoint_path or 'checkpoint'}: its provenance keys file "
                                  f"{stored['keys_file']} is missing; copy the run's provenance/ folder "
                                  "beside the checkpoint")
        with np.load(path) as z:
            arrays = {k.replace("__", "/"): np.cumsum(z[k], dtype=np.uint64) for k in z.files}
    if _digest([arrays[k] for k in sorted(arrays)]) != stored["keys_digest"]:
        raise ProvenanceError(f"{checkpoint_path or 'checkpoint'}: its provenance keys do not match the "
                              f"fingerprint it recorded ({stored['keys_digest']}): the keys file was altered")
    record = _strip(stored)
    record["keys_digest"] = stored["keys_digest"]
    for prefix, rec in _split_records(record):
        for name, split in rec["splits"].items():
            for kind in KEY_KINDS:
                split[kind] = arrays.get(f"{prefix}{name}/{kind}", np.zeros(0, np.uint64))
    return record


def _summary(rec: dict) -> dict:
    return {**{k: rec.get(k) for k in ("kind", "data", "train_subset", "valid_subsets")},
            "splits": {n: {k: s.get(k) for k in SUMMARY_FIELDS} for n, s in rec["splits"].items()}}


def describe(state: dict) -> dict:
    """A JSON-able summary of the record of ``state`` (a checkpoint dict, or a record): per split
    ``SUMMARY_FIELDS``, the pretraining summary, the checkpoint's updates; status ``unknown`` without one."""
    stored = _record_state(state)
    history = state.get("optimizer_history") or [{}]
    updates = history[-1].get("num_updates") if isinstance(history[-1], dict) else None
    if stored is None:
        return {"status": UNKNOWN, "reason": "this checkpoint predates provenance records", "updates": updates}
    out = {"status": "recorded", "version": stored.get("version"), **_summary(stored),
           "keys_digest": stored.get("keys_digest"), "keys_file": stored.get("keys_file"), "updates": updates}
    pre = stored.get("pretraining")
    if pre is not None:
        out["pretraining"] = _pretraining_summary(pre)
    return out


def overlap_counts(pk: np.ndarray, ck: np.ndarray, other_pk: np.ndarray, other_ck: np.ndarray
                   ) -> tuple[np.ndarray, dict]:
    """Which clips of keys ``(pk, ck)`` are among the sorted ``(other_pk, other_ck)``, by real
    path or by content (a mask), and the counts ``by_path``, ``by_content``, ``either``."""
    by_path, by_content = identity.overlap(pk, other_pk), identity.overlap(ck, other_ck)
    either = by_path | by_content
    return either, {"by_path": int(by_path.sum()), "by_content": int(by_content.sum()), "either": int(either.sum())}


def _overlaps(rec: dict, pk: np.ndarray, ck: np.ndarray) -> tuple[dict, dict]:
    """Per split of ``rec``: the ``overlap_counts`` mask, and its counts with the split's ``n_clips``."""
    masks, counts = {}, {}
    for name, split in rec["splits"].items():
        masks[name], found = overlap_counts(pk, ck, split["path_keys"], split["content_keys"])
        counts[name] = {**found, "n_clips": int(split.get("n_clips") or 0)}
    return masks, counts


def overlap_report(state: dict, checkpoint_path: str, paths: Sequence[str],
                   keys: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """How many of ``paths`` (the clips scored; ``keys``: their ``(path_keys, content_keys)``
    when known, else hashed here) the checkpoint saw, by real path and by content, per split
    of its fine-tuning and its pretraining record. ``training``: clips in a train subset (a
    leak); ``selection``: in a fine-tuning valid subset (selected on). ``status`` ``unknown``
    where there is no record (an exported folder, a directory, carries none)."""
    pk, ck = keys if keys is not None else identity.clip_keys(list(paths))
    exported = os.path.isdir(checkpoint_path)
    known = pk[pk != 0]  # a repeated entry is scored again: its clip weighs twice in the number
    report: dict[str, Any] = {"checkpoint": os.path.abspath(checkpoint_path), "n_scored_clips": len(pk),
                              "repeated_clips": int(len(known) - len(np.unique(known))),
                              "checkpoint_hash": None if exported else checkpoint_hash(checkpoint_path)}
    try:
        record = load(state, checkpoint_path)
    except ProvenanceError as err:
        record, report["error"] = None, str(err)
    if exported:
        report["error"] = "an exported folder holds no provenance record"
    if record is None:
        report.update(status=UNKNOWN, trained_on=None, overlap_with_training=None, training=None, selection=None)
        return report
    kind = record.get("kind") or "finetuning"
    masks, counts = _overlaps(record, pk, ck)
    trained = masks.get(record["train_subset"], np.zeros(len(pk), bool)).copy()
    selected = np.zeros(len(pk), bool)
    for v in record["valid_subsets"]:
        selected |= masks.get(v, selected)
    overlap = {kind: {"status": "recorded", "splits": counts}}
    trained_on = {kind: _summary(record)}
    pre = record.get("pretraining")
    if pre is not None:
        overlap["pretraining"] = _head(pre)
        trained_on["pretraining"] = _pretraining_summary(pre)
        if pre.get("record"):
            pre_masks, overlap["pretraining"]["splits"] = _overlaps(pre["record"], pk, ck)
            trained |= pre_masks.get(pre["record"]["train_subset"], trained)
    report.update(status="recorded", trained_on=trained_on, overlap_with_training=overlap,
                  training=int(trained.sum()), selection=int(selected.sum()),
                  trained_clips=[int(i) for i in np.flatnonzero(trained)[:10]],
                  selection_only=bool(selected.all()) if len(pk) else False)
    return report


def same_data(theirs: dict, ours: dict) -> list[str]:
    """What differs between two records' data (per split: labels and clip identities;
    the pretraining checkpoint), as phrases naming both sides; empty when the same. A data folder
    moved or copied is the same data: its ``content_digest`` (the manifest's entries and each
    entry's content key, in order) is the same."""
    problems = []
    for name, mine in ours["splits"].items():
        other = theirs["splits"].get(name)
        if other is None:
            problems.append(f"split {name}: not in the checkpoint's record (it read "
                            f"{', '.join(theirs['splits']) or 'none'})")
            continue
        moved = other.get("content_digest") is not None and other["content_digest"] == mine.get("content_digest")
        if (other["keys_digest"] != mine["keys_digest"] and not moved) or other["n_clips"] != mine["n_clips"]:
            problems.append(f"split {name}: the checkpoint was trained on {other['manifest']} ({other['n_clips']} "
                            f"clips), this run reads {mine['manifest']} ({mine['n_clips']} clips), other clips")
        elif other.get("labels_key") != mine.get("labels_key"):
            problems.append(f"split {name}: labels {other.get('labels')} then, {mine.get('labels')} now, "
                            "with other content")
    their_pre, our_pre = theirs.get("pretraining") or {}, ours.get("pretraining") or {}
    if their_pre.get("checkpoint_hash") and our_pre.get("checkpoint_hash") and \
            their_pre["checkpoint_hash"] != our_pre["checkpoint_hash"]:
        problems.append(f"encoder pretrained by {their_pre.get('checkpoint')} then, "
                        f"{our_pre.get('checkpoint')} now (another file)")
    return problems
