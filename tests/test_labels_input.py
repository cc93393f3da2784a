"""Label and CSV files as users write them: clips named by numbers, bare labels, other
encodings, and AudioSet folders given relative to SRC."""

import logging
import re

import pytest

from audio_files import noise_file
from mae_ast.data.labels import LabelError, LabelSet, read_label_descriptors, read_labels
from mae_ast.tools.prepare import main
from test_prepare import audioset, load

CLASSES = LabelSet([f"c{i}" for i in range(1, 13)], [f"/m/c{i}" for i in range(1, 13)])


# ---------------------------------------------------------------- 2: numeric clip names


def test_numeric_clip_names_are_matched_not_read_in_manifest_order(tmp_path):
    entries = sorted(f"{i}.wav" for i in range(1, 13))  # 1, 10, 11, 12, 2, ...: a manifest's order
    lbl = tmp_path / "train.lbl"
    lbl.write_text("".join(f"{i}\tc{i}\n" for i in range(1, 13)))  # numeric order
    rows = read_labels(str(lbl), CLASSES, entries, False)
    assert [CLASSES.names[r[0]] for r in rows] == [f"c{e[:-4]}" for e in entries]


def test_number_like_names_0042_1_2_nan_1e3_are_names(tmp_path):
    entries = ["a/0042.wav", "a/1_2.wav", "a/1e3.wav", "a/nan.wav"]
    lbl = tmp_path / "x.lbl"
    lbl.write_text("nan\tc4\n1e3\tc3\n0042\tc1\n1_2\tc2\n")
    assert read_labels(str(lbl), CLASSES, entries, False) == [[0], [1], [2], [3]]
    lbl.write_text("nan\tc4\n1e3\tc3\n0042\tc1\n7\tc2\n")  # one number names no clip: reported
    with pytest.raises(LabelError, match=r"x\.lbl:4: clip '7' is not an entry"):
        read_labels(str(lbl), CLASSES, entries, False)


def test_bare_labels_warn_once_that_they_cannot_be_checked(tmp_path, caplog):
    lbl = tmp_path / "bare.lbl"
    lbl.write_text("c1\nc2\n")
    with caplog.at_level(logging.WARNING, logger="mae_ast.data.labels"):
        assert read_labels(str(lbl), CLASSES, ["b.wav", "a.wav"], False) == [[0], [1]]
        read_labels(str(lbl), CLASSES, ["b.wav", "a.wav"], False)
    warned = [r for r in caplog.records if "do not name their clips" in r.getMessage()]
    assert len(warned) == 1 and str(lbl) in warned[0].getMessage()
    start_end = tmp_path / "d2v.lbl"  # data2vec's start<TAB>end<TAB>labels: unchecked too
    start_end.write_text("30.0\t40.0\tc1\n0.0\t10.0\tc2\n")
    with caplog.at_level(logging.WARNING, logger="mae_ast.data.labels"):
        assert read_labels(str(start_end), CLASSES, ["1.wav", "2.wav"], False) == [[0], [1]]
    assert any(str(start_end) in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- 13: encodings


def test_cp1252_label_file_names_file_line_and_encoding(tmp_path):
    lbl = tmp_path / "train.lbl"
    lbl.write_bytes("a.wav\tc1\nb.wav\tcaf\u00e9\n".encode("cp1252"))
    with pytest.raises(LabelError, match=r"train\.lbl:2: not UTF-8 .*cp1252.*save it as UTF-8"):
        read_labels(str(lbl), CLASSES, ["a.wav", "b.wav"], False)


def test_utf16_with_bom_is_read(tmp_path):
    desc = tmp_path / "label_descriptors.csv"
    desc.write_bytes("index,mid,display_name\n0,/m/a,Caf\u00e9\n1,/m/b,Dog\n".encode("utf-16"))
    labels = read_label_descriptors(str(desc))
    assert labels.names == ["Caf\u00e9", "Dog"]
    lbl = tmp_path / "train.lbl"
    lbl.write_bytes("b.wav\tDog\r\na.wav\tCaf\u00e9\r\n".encode("utf-16"))
    assert read_labels(str(lbl), labels, ["a.wav", "b.wav"], False) == [[0], [1]]


def test_prepare_csv_in_cp1252_is_an_error_naming_the_line(tmp_path, capsys):
    noise_file(tmp_path / "a.wav", 2000)
    table = tmp_path / "clips.csv"
    table.write_bytes("path,labels\na.wav,dog\na.wav,caf\u00e9\n".encode("cp1252"))
    assert main(["csv", str(table), "--out", str(tmp_path / "out")]) == 1
    assert f"{table}:3: not UTF-8" in capsys.readouterr().err


# ---------------------------------------------------------------- 16: AudioSet dirs from SRC


def test_audioset_csv_and_audio_dirs_are_taken_from_src(tmp_path, monkeypatch):
    src = audioset(tmp_path / "as")
    monkeypatch.chdir(tmp_path)  # not SRC: relative dirs must not be read from here
    assert main(["audioset", str(src), "--out", str(tmp_path / "out"), "--csv-dir", "csv", "--audio-dir", "audio"]) == 0
    assert load(tmp_path / "out", "valid", multi_label=True)[0] == ["eval/Y-0Bz8w7f2_A.wav"]


# ---------------------------------------------------------------- the bulk reader (issue 26)

import itertools  # noqa: E402
import random  # noqa: E402

from mae_ast.data import labels as L  # noqa: E402
from mae_ast.data.manifest import read_manifest  # noqa: E402

BULK_SET = LabelSet(["c0", "c1", "Child speech, kid speaking", "c 3"], ["/m/c0", "/m/c1", "/m/c2", "/m/c3"])
YT = ["Yabcdefghijk_0.000.mkv", "Y1e5abcdefgh_1.000.mkv", "Y-0Bz8w7f2_A_2.000.mkv", "YnanXXXXXXXX_3.000.mkv",
      "Y0000000000x.mkv", "Y1234567890a_5.000.mkv"]
BULK_CASES = {  # name: (entries, label lines); every one is read in bulk
    "youtube ids, shuffled": ([f"p{i % 2}/{n}" for i, n in enumerate(YT)],
                              ["1234567890a\t0", "abcdefghijk\t1", "-0Bz8w7f2_A\t0,1", "1e5abcdefgh\t/m/c3",
                               "nanXXXXXXXX\tc1", "0000000000x\t0,0,c 3, 1"]),
    "paths with ./ and //": (["a/x.wav", "a/b/y.wav", "./c/z.wav", "d//w.wav"],
                             ["./a/b/y.wav\t1", "a//x.wav\t0", "c/z.wav\t/m/c2", " d/w.wav \t c0 , c1 "]),
    "stems, non-ASCII": (["a/ü 🎵.mkv", "b/plain.mkv", "c/.hidden", "d/two.dots.flac"],
                         ["two.dots\t0", ".hidden\t1", "ü 🎵\t0", "plain\t1"]),
    "names without extension": (["a/x.wav", "b/x.wav"], ["b/x\t1", "a/x\t0"]),
    "start/end columns": (["1.wav", "2.wav", "3.wav"], ["0.0\t10.0\t1", "nan\t-inf\t0", "1e3\t1_0\tc1"]),
    "bare labels, CRLF": (["b.wav", "a.wav", "c.wav"], ["1\r", "0,1\r", "/m/c3\r", "", " "]),
}
IRREGULAR = {  # read line by line: what the bulk reader leaves to it
    "numbers naming clips": (["1.wav", "2.wav"], ["2\t1", "1\t0"]),
    "a display name with commas": (["a.wav", "b.wav"], ["a.wav\tChild speech, kid speaking", "b.wav\t0"]),
    "Arabic digits": (["a.wav", "b.wav"], ["\u0661\u0662\t1", "b.wav\t0"]),
    "a form feed": (["a.wav", "b.wav"], ["a.wav\t1\x0c", "b.wav\t0"]),
    "a repeated clip": (["a.wav", "b.wav"], ["a.wav\t1", "a.wav\t0"]),
    "a shared stem": (["a/x.wav", "b/x.flac"], ["x\t1", "x\t0"]),
}


def _both(tmp_path, entries, lines, packed):
    lbl = tmp_path / "x.lbl"
    lbl.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    if packed:
        (tmp_path / "x.tsv").write_text("/\n" + "".join(f"{e}\t16000\n" for e in entries), encoding="utf-8")
        entries = read_manifest(str(tmp_path / "x.tsv")).entries
    rows, order = L._read_lines(str(lbl), L.read_text(str(lbl)), BULK_SET, entries, True, "m")
    return str(lbl), entries, rows if order is None else rows.take(order)


@pytest.mark.parametrize("chunk", [L._CHUNK, 8])  # 8 characters: a slice per line or two
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("case", sorted(BULK_CASES))
def test_bulk_reader_returns_what_the_line_reader_returns(tmp_path, monkeypatch, case, packed, chunk):
    monkeypatch.setattr(L, "_CHUNK", chunk)
    path, entries, want = _both(tmp_path, *BULK_CASES[case], packed)
    rows, names = L._read_bulk(L.read_text(path), BULK_SET, len(entries), True)  # raises if not taken
    assert (rows if names is None else rows.take(L._hashed_order(names, entries))).tolist() == want.tolist()
    assert L.read_label_rows(path, BULK_SET, entries, True).tolist() == want.tolist()


@pytest.mark.parametrize("case", sorted(IRREGULAR))
def test_bulk_reader_leaves_irregular_files_to_the_line_reader(tmp_path, case):
    entries, lines = IRREGULAR[case]
    path = tmp_path / "x.lbl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(L._Irregular):
        rows, names = L._read_bulk(L.read_text(str(path)), BULK_SET, len(entries), True)
        L._hashed_order(names, entries)
    try:
        want = _both(tmp_path, entries, lines, False)[2].tolist()
    except LabelError as err:
        with pytest.raises(LabelError, match=re.escape(str(err))):
            L.read_label_rows(str(path), BULK_SET, entries, True)
    else:
        assert L.read_label_rows(str(path), BULK_SET, entries, True).tolist() == want


def test_bulk_screens_hold_for_every_code_point_and_every_number():
    for c in map(chr, range(0x110000)):  # where splitlines/strip see more than "\n", " ", "\t"
        if c.isspace() or len(f"a{c}b".splitlines()) > 1:
            assert c in " \t\n" or L._ODD_SPACE.fullmatch(c), hex(ord(c))
    rng = random.Random(0)
    words = ["", "+", "-", "nan", "INF", "Infinity", "e", "E", "_", ".", "0", "7", "x", "a", "i", "n", "f", " "]
    for parts in itertools.chain(itertools.product(words, repeat=3), ([rng.choice(words) for _ in range(6)]
                                                                      for _ in range(5000))):
        field = "".join(parts).strip()
        try:
            float(field)
            number = True
        except ValueError:
            number = False
        assert L._is_number(field) == number, field
        assert not number or L._maybe_numbers(f"\n{field}\n".encode()), field
