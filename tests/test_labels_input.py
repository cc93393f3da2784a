"""Label and CSV files as users write them: clips named by numbers, bare labels, other
encodings, and AudioSet folders given relative to SRC."""

import logging

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
