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


# ---------------------------------------------------------------- labels as CSR arrays

from mae_ast.data import labels as L  # noqa: E402
from mae_ast.data.sampling import label_counts, sample_weights  # noqa: E402


def list_labels(path, label_set, entries, multi_label):
    """The list-based reader the CSR one replaced (whole file, a list per line, ``align``)."""
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    blank = next((n for n, line in enumerate(lines, start=1) if not line.strip()), None)
    if blank is not None:
        raise L.LabelError(f"{path}:{blank}: blank line; write one label line per manifest entry, none empty")
    if len(lines) != len(entries):
        where = len(entries) + 1 if len(lines) > len(entries) else max(len(lines), 1)
        raise L.LabelError(f"{path}:{where}: {len(lines)} label lines but the manifest has {len(entries)} "
                           "entries; write one label line per manifest entry")
    rows = [L._parse_line(path, n, line, label_set, multi_label) for n, line in enumerate(lines, start=1)]
    ids = [L.clip_name(line) for line in lines]
    if all(i is None for i in ids):
        return rows
    return [rows[i] for i in L.align(path, ids, list(entries), "the manifest")]


def outcome(fn, *args):
    try:
        return fn(*args)
    except L.LabelError as err:
        return f"LabelError: {err}"


LABEL_FILES = {
    "manifest order": lambda e, r: [",".join(map(str, row)) for row in r],
    "shuffled by path": lambda e, r: [f"{e[i]}\t{','.join(map(str, r[i]))}" for i in (3, 0, 5, 1, 4, 2)],
    "youtube ids": lambda e, r: [f"{e[i].rsplit('/', 1)[1][1:12]}\t{r[i][0]}" for i in (5, 4, 3, 2, 1, 0)],
    "stems and mids": lambda e, r: [f"{e[i].rsplit('/', 1)[1][:-4]}\t/m/c{r[i][0]}" for i in (1, 0, 2, 3, 5, 4)],
    "a repeated clip": lambda e, r: [f"{e[i]}\t0" for i in (0, 1, 2, 3, 4, 0)],
    "an unknown clip": lambda e, r: [f"{e[i]}\t0" for i in range(5)] + ["nosuch.mkv\t1"],
    "a line without a name": lambda e, r: [f"{e[i]}\t0" for i in range(5)] + ["1"],
    "start/end columns": lambda e, r: [f"0.0\t10.0\t{r[i][0]}" for i in range(6)],
    "an unknown label": lambda e, r: ["0", "1", "zzz", "1", "qqq", "2"],
    "a blank line": lambda e, r: ["0", "", "1", "1", "2", "2"],
    "trailing blank lines": lambda e, r: ["0", "1", "2", "0", "1", "2", "", ""],
    "a line too many": lambda e, r: ["0"] * 7,
    "two labels, single-label": lambda e, r: ["0,1"] + ["0"] * 5,
}


@pytest.mark.parametrize("case", sorted(LABEL_FILES))
@pytest.mark.parametrize("multi_label", [False, True])
def test_label_rows_are_the_lists_read_labels_returned(tmp_path, case, multi_label):
    label_set = L.LabelSet(["c0", "c1", "c2"], ["/m/c0", "/m/c1", "/m/c2"])
    entries = ["a/Yabcdefghijk_0.000.mkv", "a/YBBBBBBBBBBB_1.000.mkv", "b/YCCCCCCCCCCC_2.000.mkv",
               "b/YDDDDDDDDDDD_3.000.mkv", "c/YEEEEEEEEEEE_4.000.mkv", "c/YFFFFFFFFFFF_5.000.mkv"]
    rows = [[0, 1] if multi_label else [0], [1], [2], [0], [1, 2] if multi_label else [1], [2]]
    path = tmp_path / "x.lbl"
    path.write_text("".join(line + "\n" for line in LABEL_FILES[case](entries, rows)))
    want = outcome(list_labels, str(path), label_set, entries, multi_label)
    got = outcome(L.read_label_rows, str(path), label_set, entries, multi_label)
    assert (got if isinstance(got, str) else got.tolist()) == want
    assert outcome(L.read_labels, str(path), label_set, entries, multi_label) == want


def test_the_benchmarks_audioset_split_is_read_in_bulk_as_the_list_reader_reads_it(tmp_path):
    """BENCHMARKS.md's 2 M-line figures come from the bulk reader: a file of that shape sent
    to the line reader would pay Python work per line and ``align``'s dicts again."""
    import sys

    sys.path.insert(0, str(DEMO.parents[1] / "bench"))
    from data_scale import write_split

    write_split(str(tmp_path), 3000)
    label_set = L.read_label_descriptors(str(tmp_path / "label_descriptors.csv"))
    entries = read_manifest(str(tmp_path / "train.tsv")).entries
    lbl = str(tmp_path / "train.lbl")
    rows, names = L._read_bulk(L.read_text(lbl), label_set, len(entries), True)  # raises if not taken
    want = list_labels(lbl, label_set, list(entries), True)
    assert rows.take(L._hashed_order(names, entries)).tolist() == want
    assert L.read_label_rows(lbl, label_set, entries, True).tolist() == want


def test_label_rows_take_and_compare_as_lists():
    rows = L.LabelRows.from_rows([[1, 2], [3], [0, 4, 5], []])
    assert rows.take(np.array([2, 0, 3, 1])).tolist() == [[0, 4, 5], [1, 2], [], [3]]
    assert rows == [[1, 2], [3], [0, 4, 5], []] and rows[-2] == [0, 4, 5]


def test_vectorised_sample_weights_equal_the_per_clip_sums():
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 40, rng.integers(0, 6)).tolist() for _ in range(3000)]
    counts = np.zeros(40)
    for row in rows:
        counts[np.unique(row).astype(int)] += 1
    label_weight = 1000.0 / (counts + 0.01)
    want = np.array([label_weight[np.unique(row).astype(int)].sum() for row in rows])
    np.testing.assert_array_equal(label_counts(rows, 40), counts)
    np.testing.assert_array_equal(sample_weights(rows, 40), want)
    np.testing.assert_array_equal(sample_weights(L.LabelRows.from_rows(rows), 40), want)
    with pytest.raises(ValueError, match=r"label out of range \[0, 40\): \[3, 40\]"):
        sample_weights(rows[:5] + [[3, 40]], 40)


# ---------------------------------------------------------------- mae-ast-manifest at scale

def test_manifest_lengths_in_workers_match_serial_and_mkv_is_not_decoded(tmp_path, monkeypatch):
    import shutil

    import av

    from mae_ast.data.audio_io import decode_audio
    from mae_ast.data.datadir import audio_length, find_audio
    from mae_ast.tools.manifest import read_lengths

    audio = tmp_path / "audio"
    shutil.copytree(DEMO / "audio", audio)
    (audio / "broken.mkv").write_bytes(b"nope" * 10)
    files = find_audio(str(audio))
    serial = list(read_lengths(str(audio), files, 1))
    parallel = list(read_lengths(str(audio), files, 2))
    assert [(r, n if isinstance(n, int) else str(n)) for r, n in serial] == \
        [(r, n if isinstance(n, int) else str(n)) for r, n in parallel]
    assert [r for r, n in parallel if not isinstance(n, int)] == ["broken.mkv"]
    for name in ("env_06.mkv", "env_14.mkv"):
        stated = audio_length(str(audio / name))
        wav, rate = decode_audio(str(audio / name), expected_samples=stated)  # passes the length check
        assert 0 <= stated - len(wav) <= 0.2 * rate
    monkeypatch.setattr(av.container.InputContainer, "decode", lambda *a, **k: pytest.fail("decoded"))
    assert audio_length(str(audio / "env_06.mkv")) > 0
