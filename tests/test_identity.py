"""Clip identity: one key for one file under any name, copies share a content key."""

import os
import shutil
from pathlib import Path
from unittest import mock

import numpy as np

from mae_ast.data.identity import SAMPLE_BYTES, clip_keys, content_key, overlap, path_key


def test_symlinks_share_a_path_key_and_copies_a_content_key(tmp_path):
    rng = np.random.default_rng(0)
    a = tmp_path / "a.wav"
    a.write_bytes(rng.bytes(5 * SAMPLE_BYTES + 17))
    os.symlink(a, tmp_path / "link.wav")
    shutil.copy(a, tmp_path / "copy.wav")
    b = tmp_path / "b.wav"
    data = bytearray(a.read_bytes())
    data[-1] ^= 1  # one byte differs, inside the last sample
    b.write_bytes(bytes(data))
    assert path_key(str(tmp_path / "link.wav")) == path_key(str(a))
    assert path_key(str(tmp_path / "copy.wav")) != path_key(str(a))
    assert content_key(str(tmp_path / "copy.wav")) == content_key(str(a))
    assert content_key(str(b)) != content_key(str(a))
    small = tmp_path / "s.wav"
    small.write_bytes(b"x" * 10)
    assert content_key(str(small)) != content_key(str(a))


def test_clip_keys_and_overlap(tmp_path):
    paths = []
    for i in range(100):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(bytes([i]) * (i + 1))
        paths.append(str(p))
    pk, ck = clip_keys(paths + [str(tmp_path / "missing.bin")], workers=4)
    assert pk.dtype == np.uint64 and len(pk) == 101 and ck[-1] == 0
    assert list(ck[:100]) == [content_key(p) for p in paths]
    other = np.sort(ck[10:20])
    hit = overlap(ck, other)
    assert hit.sum() == 10 and hit[10:20].all()
    assert not overlap(np.zeros(3, np.uint64), np.zeros(1, np.uint64)).any()  # unreadable never matches


def test_sidecar_is_used_only_while_current(tmp_path):
    from mae_ast.data.identity import manifest_keys, sidecar_path, write_sidecar

    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(bytes([i]) * 100)
        paths.append(str(p))
    tsv = tmp_path / "train.tsv"
    tsv.write_text(str(tmp_path) + "\n" + "".join(f"{i}.bin\t100\n" for i in range(5)))
    side = write_sidecar(str(tsv), paths)
    assert side == sidecar_path(str(tsv)) == str(tmp_path / "train.keys.npz")
    pk, ck = manifest_keys(str(tsv), paths)
    assert list(ck) == [content_key(p) for p in paths]
    # Forge the sidecar's keys: a current sidecar is trusted (not rehashed) ...
    with np.load(side) as z:
        forged = {k: z[k] for k in z.files}
    forged["content_keys"] = forged["content_keys"] + np.uint64(1)
    np.savez(side, **forged)
    assert list(manifest_keys(str(tsv), paths)[1]) == [c + 1 for c in ck]
    # ... but a file rewritten since (new size) makes it stale, so keys are recomputed.
    (tmp_path / "2.bin").write_bytes(b"changed")
    assert manifest_keys(str(tsv), paths)[1][2] == content_key(paths[2])


def test_sidecar_of_a_copied_folder_gives_the_copys_path_keys(tmp_path):
    """``cp -a`` keeps the manifest's text, every size and mtime, and the sidecar; a relative
    root now names the copy's files, whose path keys the copy's leak counts need."""
    from mae_ast.data.identity import manifest_keys, write_sidecar
    from mae_ast.data.manifest import read_manifest

    data = tmp_path / "data"
    (data / "audio").mkdir(parents=True)
    for i in range(3):
        (data / "audio" / f"{i}.bin").write_bytes(bytes([i]) * 100)
    (data / "train.tsv").write_text("audio\n" + "".join(f"{i}.bin\t100\n" for i in range(3)))
    write_sidecar(str(data / "train.tsv"), list(read_manifest(str(data / "train.tsv")).paths))
    shutil.copytree(data, tmp_path / "copy", copy_function=shutil.copy2)
    paths = list(read_manifest(str(tmp_path / "copy" / "train.tsv")).paths)
    pk, ck = manifest_keys(str(tmp_path / "copy" / "train.tsv"), paths)
    assert list(pk) == [path_key(p) for p in paths] and list(ck) == [content_key(p) for p in paths]
    assert not set(pk) & {path_key(p) for p in read_manifest(str(data / "train.tsv")).paths}
    # The stale sidecar is rewritten once: the next run reads the copy's keys without hashing.
    with mock.patch("mae_ast.data.identity.clip_keys", side_effect=AssertionError("hashed again")):
        again = manifest_keys(str(tmp_path / "copy" / "train.tsv"), paths)
    assert np.array_equal(again[0], pk) and np.array_equal(again[1], ck)


def test_stamp_names_the_changed_clip_and_may_let_a_gone_clip_pass(tmp_path):
    from mae_ast.data.identity import Stamp

    paths = [str(tmp_path / f"{i}.bin") for i in range(3)]
    for i, p in enumerate(paths):
        Path(p).write_bytes(bytes([i]) * 10)
    tsv = tmp_path / "train.tsv"
    tsv.write_text(str(tmp_path) + "\n" + "".join(f"{i}.bin\t10\n" for i in range(3)))
    with open(tmp_path / "s.npz", "wb") as f:
        np.savez(f, **Stamp.of(str(tsv), paths).arrays())
    with np.load(tmp_path / "s.npz") as z:  # the saved form reads back to the same stamp
        stamp = Stamp.read(z)
    assert stamp.manifest_change(str(tsv)) is None and stamp.clips_change(paths) is None
    os.remove(paths[1])  # gone: a change, unless the caller keeps what it made from the file
    assert "1 of 3 clips changed" in stamp.clips_change(paths, [2, 3, 4])
    assert "(manifest line 3: deleted since)" in stamp.clips_change(paths, [2, 3, 4])
    assert stamp.clips_change(paths, missing_ok=True) is None
    Path(paths[2]).write_bytes(b"other size")  # rewritten: a change either way
    assert paths[2] in stamp.clips_change(paths, missing_ok=True)
    tsv.write_text(tsv.read_text() + "3.bin\t10\n")
    assert "another version" in stamp.manifest_change(str(tsv))
