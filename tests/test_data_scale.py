"""Data-side storage at AudioSet scale (issue 26): the packed manifest, vectorised
batching and CSR labels return exactly what the plain Python lists did."""

import gc
import logging
import os

import numpy as np
import pytest
from fairseq.data import data_utils

from conftest import DEMO
from mae_ast.data import MAE_AST_Dataset, read_manifest


def plain_manifest(path, min_keep=None, max_keep=None):
    """The list-based reader the packed one replaced: (paths, entries, sizes, lines)."""
    with open(path, encoding="utf-8-sig") as f:
        root = os.path.join(os.path.dirname(os.path.abspath(path)), f.readline().strip())
        out = ([], [], [], [])
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            entry, size = line.rstrip("\n").split("\t")
            if (min_keep is not None and int(size) < min_keep) or (max_keep is not None and int(size) > max_keep):
                continue
            for column, value in zip(out, (os.path.join(root, entry), entry, int(size), lineno)):
                column.append(value)
    return out


def write_rows(path, root, rows):
    path.write_text(root + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_packed_manifest_returns_the_entries_as_written(tmp_path):
    rows = ["a/b/x.flac\t16000", "a/b/y.flac\t100", "", "top.wav\t32000", "a/c/ü 🎵.mkv\t48000",
            f"{tmp_path}/abs/z.flac\t20000", "a/b/w.flac\t900000", "./rel/../a/q.flac\t17000"]
    path = write_rows(tmp_path / "train.tsv", ".", rows)
    for keep in ((None, None), (1000, 500000)):
        m = read_manifest(path, *keep)
        paths, entries, sizes, lines = plain_manifest(path, *keep)
        assert list(m.paths) == paths and [m.paths[i] for i in range(len(m))] == paths
        assert list(m.entries) == entries and m.entries[-1] == entries[-1] and m.entries[1:3] == entries[1:3]
        assert m.sizes.tolist() == sizes and m.sizes.dtype == np.int64
        assert m.lines.tolist() == lines
    with pytest.raises(IndexError):
        m.entries[len(m)]


def test_the_dataset_holds_no_python_object_per_clip(tmp_path):
    """Forked workers copy every page whose objects they touch (reference counts); a
    dataset of N clips must not be N Python strings and ints."""
    n = 20_000
    rows = [f"part{i % 7:02d}/Y{i:011d}_30.000.mkv\t160000" for i in range(n)]
    path = write_rows(tmp_path / "train.tsv", str(tmp_path), rows)
    gc.collect()
    before = len(gc.get_objects())
    ds = MAE_AST_Dataset(path)
    gc.collect()
    assert len(gc.get_objects()) - before < 200
    assert ds.paths[n - 1] == f"{tmp_path}/part{(n - 1) % 7:02d}/Y{n - 1:011d}_30.000.mkv"
    assert ds.entries.nbytes < 40 * n  # ~25 bytes of name, 4 of offset, 4 of folder per clip


@pytest.mark.parametrize("pad_audio", [False, True])
def test_vectorised_batching_gives_the_per_clip_batches(pad_audio):
    ds = MAE_AST_Dataset(str(DEMO / "train.tsv"), max_sample_size=60000, pad_audio=pad_audio)
    np.random.seed(3)
    indices = ds.ordered_indices()
    assert ds.num_tokens_vec(indices).tolist() == [ds.num_tokens(i) for i in indices]
    for max_tokens, mult in ((200_000, 1), (500_000, 2), (10**8, 8)):
        got = ds.batch_by_size(indices, max_tokens=max_tokens, required_batch_size_multiple=mult)
        want = data_utils.batch_by_size(indices, ds.num_tokens, max_tokens=max_tokens,
                                        required_batch_size_multiple=mult)
        assert [b.tolist() for b in got] == [b.tolist() for b in want]


def test_left_out_clips_are_named_as_the_set_difference_named_them(caplog):
    ds = MAE_AST_Dataset(str(DEMO / "train.tsv"))
    indices = ds.ordered_indices()[:21]
    with caplog.at_level(logging.WARNING):
        batches = ds.batch_by_size(indices, max_tokens=100_000_000, required_batch_size_multiple=8)
    left = sorted(set(indices.tolist()) - {int(i) for b in batches for i in b})
    message = next(r.message for r in caplog.records if "batching leaves out" in r.message)
    assert f"e.g. {[ds.paths[i] for i in left[:3]]}" in message
