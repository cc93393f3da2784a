"""Label files (mae_ast.data.labels) and ``mae-ast-prepare`` on miniature copies of each layout."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_files import noise_file
from conftest import BIN, run_cli
from mae_ast.data.labels import (
    LabelError, LabelSet, read_label_descriptors, read_labels, write_label_descriptors,
    write_labels,
)
from mae_ast.data.manifest import read_manifest
from mae_ast.tools.prepare import main

AS_CLASSES = [("/m/09x0r", "Speech"), ("/m/0ytgt", "Child speech, kid speaking"),
              ("/m/05zppz", "Male speech, man speaking"), ("/m/04rlf", "Music")]


def prepare(*args) -> subprocess.CompletedProcess:
    """The real console script, as a user runs it."""
    return run_cli(BIN / "mae-ast-prepare", *args, timeout=120)


def load(data: Path, split: str, multi_label: bool = False) -> tuple[list[str], list[int], list[list[int]]]:
    """(paths relative to the manifest root, lengths, labels) of a written split, read by the readers."""
    m = read_manifest(str(data / f"{split}.tsv"))
    labels = read_label_descriptors(str(data / "label_descriptors.csv"))
    rows = read_labels(str(data / f"{split}.lbl"), labels, len(m.paths), multi_label)
    return [str(Path(p).relative_to(m.root)) if p.startswith(m.root) else p for p in m.paths], m.sizes.tolist(), rows


# ---------------------------------------------------------------- labels.py


def test_labels_round_trip_with_mids_names_and_commas(tmp_path):
    mids, names = [m for m, _ in AS_CLASSES], [n for _, n in AS_CLASSES]
    write_label_descriptors(str(tmp_path / "label_descriptors.csv"), names, mids)
    text = (tmp_path / "label_descriptors.csv").read_text()
    assert text.splitlines()[:3] == ["index,mid,display_name", "0,/m/09x0r,Speech",
                                     '1,/m/0ytgt,"Child speech, kid speaking"']
    labels = read_label_descriptors(str(tmp_path / "label_descriptors.csv"))
    assert (labels.names, labels.mids, labels.num_classes) == (names, mids, 4)
    write_labels(str(tmp_path / "a.lbl"), [[0, 1], [3]], ["clipA", "clipB"])
    assert (tmp_path / "a.lbl").read_text() == "clipA\t0,1\nclipB\t3\n"
    # EAT-style mids, display names holding commas, and bare indices all resolve.
    (tmp_path / "b.lbl").write_text("x\ty\t/m/04rlf,Child speech, kid speaking\nSpeech,2\n3\n")
    assert read_labels(str(tmp_path / "b.lbl"), labels, 3, multi_label=True) == [[3, 1], [0, 2], [3]]


def test_names_default_to_mids_and_lookup_rejects_ambiguous_names(tmp_path):
    write_label_descriptors(str(tmp_path / "d.csv"), ["dog", "cat"])
    assert (tmp_path / "d.csv").read_text() == "index,mid,display_name\n0,dog,dog\n1,cat,cat\n"
    twins = LabelSet(["bark", "bark"], ["/m/a", "/m/b"])
    assert twins.lookup("/m/b") == 1
    with pytest.raises(KeyError, match="several classes"):
        twins.lookup("bark")


@pytest.fixture
def esc_labels(tmp_path) -> LabelSet:
    write_label_descriptors(str(tmp_path / "label_descriptors.csv"), ["dog", "rain", "crow"], ["/m/d", "/m/r", "/m/c"])
    return read_label_descriptors(str(tmp_path / "label_descriptors.csv"))


@pytest.mark.parametrize("content, entries, multi, message", [
    ("a\t0\nb\t1\n", 3, False, r"x\.lbl:2: 2 label lines but the manifest has 3 entries"),
    ("a\t0\nb\t1\nc\t2\n", 2, False, r"x\.lbl:3: 3 label lines but the manifest has 2 entries"),
    ("a\t0\nb\t3\n", 2, False, r"x\.lbl:2: class index 3 out of range 0\.\.2"),
    ("a\t/m/zz\n", 1, True, r"x\.lbl:1: unknown label '/m/zz'"),
    ("a\t0\nb\t/m/d,/m/r\n", 2, False, r"x\.lbl:2: 2 labels \(/m/d,/m/r\) .*task\.multi_label=true"),
    ("a\t0\nb\t\n", 2, False, r"x\.lbl:2: empty label field"),
])
def test_read_labels_errors_name_file_and_line(tmp_path, esc_labels, content, entries, multi, message):
    (tmp_path / "x.lbl").write_text(content)
    with pytest.raises(LabelError, match=message):
        read_labels(str(tmp_path / "x.lbl"), esc_labels, entries, multi)


@pytest.mark.parametrize("content, message", [
    ("idx,mid,name\n0,/m/a,A\n", r"d\.csv:1: header must be 'index,mid,display_name'"),
    ("index,mid,display_name\n0,/m/a,A\n0,/m/b,B\n", r"d\.csv:3: index 0 already given on line 2"),
    ("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n", r"d\.csv:3: index 2 but index 1 is missing"),
    ("index,mid,display_name\none,/m/a,A\n", r"d\.csv:2: index 'one' is not an integer"),
    ("index,mid,display_name\n0,/m/a,Child speech, kid\n", r"d\.csv:2: expected 3 fields.*quote display names"),
])
def test_descriptor_errors_name_file_and_line(tmp_path, content, message):
    (tmp_path / "d.csv").write_text(content)
    with pytest.raises(LabelError, match=message):
        read_label_descriptors(str(tmp_path / "d.csv"))
    with pytest.raises(LabelError, match=r"nope\.csv: label descriptors not found"):
        read_label_descriptors(str(tmp_path / "nope.csv"))


# ---------------------------------------------------------------- esc50


def esc50(root: Path) -> Path:
    """3 classes x 5 folds, 44.1 kHz; fold 3's crow clip is corrupt."""
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target, category in enumerate(["dog", "rain", "crow"]):
            name = f"{fold}-{100 + target}-A-{target}.wav"
            if (fold, target) == (3, 2):
                (root / "audio").mkdir(parents=True, exist_ok=True)
                (root / "audio" / name).write_bytes(b"RIFF not really a wave file")
            else:
                noise_file(root / "audio" / name, 4410 + 10 * fold + target, rate=44100, seed=fold * 10 + target)
            lines.append(f"{name},{fold},{target},{category},False,{100 + target},A")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    return root


def test_esc50_one_folder_per_held_out_fold(tmp_path):
    src = esc50(tmp_path / "ESC-50-master")
    proc = prepare("esc50", src, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"fold{k}" for k in range(1, 6)]
    left_out = [line for line in proc.stderr.splitlines() if line.startswith("unreadable, left out:")]
    assert len(left_out) == 1 and "3-102-A-2.wav" in left_out[0]  # listed once, though four folds use it
    fold1 = tmp_path / "out" / "fold1"
    paths, sizes, labels = load(fold1, "test")
    assert paths == ["1-100-A-0.wav", "1-101-A-1.wav", "1-102-A-2.wav"]
    assert (sizes, labels) == ([4420, 4421, 4422], [[0], [1], [2]])
    assert load(fold1, "valid")[0] == paths
    train_paths, _, train_labels = load(fold1, "train")
    assert len(train_paths) == 11 and "3-102-A-2.wav" not in train_paths  # 12 other clips, one corrupt
    assert all(p[0] != "1" for p in train_paths)
    assert train_labels[train_paths.index("4-101-A-1.wav")] == [1]
    assert read_label_descriptors(str(fold1 / "label_descriptors.csv")).names == ["dog", "rain", "crow"]
    assert load(tmp_path / "out" / "fold3", "test")[0] == ["3-100-A-0.wav", "3-101-A-1.wav"]
    assert (fold1 / "test.lbl").read_text().splitlines()[0] == "1-100-A-0.wav\t0"
    assert read_manifest(str(fold1 / "train.tsv")).root == str(src / "audio")
    assert "fold3/test" in proc.stdout and "unreadable" in proc.stdout


def test_exit_codes_wrong_layout_and_bad_options(tmp_path, capsys):
    proc = prepare("esc50", tmp_path, "--out", tmp_path / "out")
    assert proc.returncode == 1 and "meta/esc50.csv not found" in proc.stderr and "ESC-50-master" in proc.stderr
    assert not (tmp_path / "out").exists()
    for argv in (["esc50", str(tmp_path), "--out", "o", "--folds", "one"], ["cats", str(tmp_path), "--out", "o"],
                 ["folders", str(tmp_path), "--out", "o", "--valid-percent", "0.7", "--test-percent", "0.7"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    src = esc50(tmp_path / "esc")
    assert main(["esc50", str(src), "--out", str(tmp_path / "o"), "--folds", "6"]) == 1
    assert "no clips in fold(s) [6]" in capsys.readouterr().err
    assert main(["folders", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 1
    assert "absent: not a folder" in capsys.readouterr().err


# ---------------------------------------------------------------- speech commands


def speech_commands(root: Path) -> Path:
    for k, (word, n) in enumerate((("yes", 3), ("no", 3), ("bed", 2), ("up", 1))):
        for i in range(n):
            noise_file(root / word / f"s{i}_nohash_0.wav", 4000 + i, seed=10 * k + i)
    noise_file(root / "_background_noise_" / "white_noise.wav", 64000, seed=7)
    noise_file(root / "_background_noise_" / "running_tap.wav", 20000, seed=8)
    (root / "_background_noise_" / "README.md").write_text("noise")
    (root / "validation_list.txt").write_text("yes/s1_nohash_0.wav\nbed/s1_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/s2_nohash_0.wav\n")
    return root


def test_speechcommands_35_words_from_lists(tmp_path):
    src = speech_commands(tmp_path / "sc")
    proc = prepare("speechcommands", src, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert read_label_descriptors(str(out / "label_descriptors.csv")).names == ["bed", "no", "up", "yes"]
    assert load(out, "valid")[0::2] == (["bed/s1_nohash_0.wav", "yes/s1_nohash_0.wav"], [[0], [3]])
    assert load(out, "test")[0::2] == (["no/s2_nohash_0.wav"], [[1]])
    train = load(out, "train")
    assert train[0] == ["bed/s0_nohash_0.wav", "no/s0_nohash_0.wav", "no/s1_nohash_0.wav", "up/s0_nohash_0.wav",
                        "yes/s0_nohash_0.wav", "yes/s2_nohash_0.wav"]
    assert train[1] == [4000, 4000, 4001, 4000, 4000, 4002] and train[2] == [[0], [1], [1], [2], [3], [3]]
    assert "_background_noise_" not in "".join((out / s).read_text() for s in ("train.tsv", "valid.tsv", "test.tsv"))


def test_speechcommands_ks1_with_silence_crops(tmp_path):
    src = speech_commands(tmp_path / "sc")
    out = tmp_path / "ks1"
    proc = prepare("speechcommands", src, "--out", out, "--variant", "ks1", "--silence-per-split", "3")
    assert proc.returncode == 0, proc.stderr
    labels = read_label_descriptors(str(out / "label_descriptors.csv"))
    assert labels.names[:2] == ["yes", "no"] and labels.names[10:] == ["_unknown_", "_silence_"]
    assert labels.num_classes == 12
    paths, sizes, rows = load(out, "train")
    at = {p: i for i, p in enumerate(paths)}  # word clips by absolute path: the manifest root is OUT
    assert rows[at[str(src / "bed/s0_nohash_0.wav")]] == [10] and rows[at[str(src / "up/s0_nohash_0.wav")]] == [2]
    assert rows[at[str(src / "yes/s0_nohash_0.wav")]] == [0]
    crops = [(p, n, r) for p, n, r in zip(paths, sizes, rows) if "_silence_" in p]
    assert [Path(p).name for p, _, _ in crops] == ["train_00000.wav", "train_00001.wav", "train_00002.wav"]
    assert all(n == 16000 and r == [11] for _, n, r in crops)
    info = sf.info(out / crops[0][0])
    assert (info.frames, info.samplerate) == (16000, 16000) and crops[0][0].startswith("_silence_/")
    assert np.abs(sf.read(out / crops[0][0])[0]).max() > 0.01  # cut from the noise, not zeros
    assert [r for r in load(out, "test")[2]] == [[1], [11], [11], [11]]
    # Default count: about 1/12 of the split (6 train word clips / 11 -> 1 crop).
    assert main(["speechcommands", str(src), "--out", str(tmp_path / "d"), "--variant", "ks1"]) == 0
    assert sum("_silence_" in p for p in load(tmp_path / "d", "train")[0]) == 1


# ---------------------------------------------------------------- audioset


def audioset(root: Path) -> Path:
    csvs = root / "csv"
    csvs.mkdir(parents=True)
    rows = "".join(f'{i},{mid},"{name}"\n' for i, (mid, name) in enumerate(AS_CLASSES))
    (csvs / "class_labels_indices.csv").write_text("index,mid,display_name\n" + rows)
    head = ("# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=3\n"
            "# YTID, start_seconds, end_seconds, positive_labels\n")
    (csvs / "balanced_train_segments.csv").write_text(head + (
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/0ytgt"\n'
        '--ZhevVpy1s, 50.000, 60.000, "/m/04rlf"\n'
        '--aO5cdqSAg, 30.000, 40.000, "/m/04rlf"\n'
        '--aE2O5G5WE, 0.000, 10.000, "/m/05zppz,/m/09x0r,/m/04rlf"\n'))
    (csvs / "eval_segments.csv").write_text(head + (
        '-0Bz8w7f2_A, 0.000, 10.000, "/m/04rlf"\n'
        '-1nilez17Dg, 30.000, 40.000, "/m/09x0r"\n'))
    audio = root / "audio"
    noise_file(audio / "balanced" / "--PJHxphWEs.flac", 3200)
    noise_file(audio / "balanced" / "--ZhevVpy1s_50.000.wav", 3300, rate=32000)
    noise_file(audio / "--aE2O5G5WE.flac", 3400)
    noise_file(audio / "eval" / "Y-0Bz8w7f2_A.wav", 3500)
    return root


def test_audioset_multi_label_and_missing_clips(tmp_path):
    src = audioset(tmp_path / "as")
    out = tmp_path / "out"
    proc = prepare("audioset", src, "--out", out, "--csv-dir", src / "csv", "--audio-dir", src / "audio")
    assert proc.returncode == 0, proc.stderr
    paths, sizes, rows = load(out, "train", multi_label=True)
    assert paths == ["balanced/--PJHxphWEs.flac", "balanced/--ZhevVpy1s_50.000.wav", "--aE2O5G5WE.flac"]
    assert sizes == [3200, 3300, 3400] and rows == [[0, 1], [3], [2, 0, 3]]
    assert (out / "missing_train.txt").read_text() == "--aO5cdqSAg\n"
    for split in ("valid", "test"):
        assert load(out, split, multi_label=True)[0::2] == (["eval/Y-0Bz8w7f2_A.wav"], [[3]])
        assert (out / f"missing_{split}.txt").read_text() == "-1nilez17Dg\n"
    labels = read_label_descriptors(str(out / "label_descriptors.csv"))
    assert list(zip(labels.mids, labels.names)) == AS_CLASSES
    assert "2 clip(s) named in the split CSVs have no audio file" in proc.stdout
    with pytest.raises(LabelError, match=r"train\.lbl:1: 2 labels"):
        load(out, "train", multi_label=False)


def test_a_later_run_removes_the_missing_list_of_a_split_it_writes(tmp_path, capsys):
    """An AudioSet run's missing_{split}.txt stayed beside a later folders run's (or
    mae-ast-manifest's) {split}.tsv, listing ids of clips that folder never held."""
    from mae_ast.tools import manifest

    src, out, classes = audioset(tmp_path / "as"), tmp_path / "out", tmp_path / "classes"
    for i in range(4):
        noise_file(classes / "dog" / f"d{i}.wav", 1000 + i)
        noise_file(classes / "cat" / f"c{i}.wav", 2000 + i)
    as_args = ["audioset", str(src), "--out", str(out), "--csv-dir", str(src / "csv"),
               "--audio-dir", str(src / "audio")]
    assert main(as_args) == 0 and (out / "missing_train.txt").is_file()
    capsys.readouterr()
    assert main(["folders", str(classes), "--out", str(out)]) == 0
    assert list(out.glob("missing_*")) == []
    assert f"{out / 'missing_train.txt'}" in capsys.readouterr().err  # and named
    assert main(as_args) == 0 and (out / "train.lbl").is_file()
    assert manifest.main([str(classes), "--out", str(out), "--valid-percent", "0.2", "--test-percent", "0.2"]) == 0
    assert list(out.glob("*.lbl")) + list(out.glob("missing_*")) == []


# ---------------------------------------------------------------- folders and csv


def test_folders_stratified_and_seeded(tmp_path):
    src = tmp_path / "classes"
    for i in range(5):
        noise_file(src / "dog" / f"d{i}.wav", 1000 + i)
        noise_file(src / "cat" / "sub" / f"c{i}.flac", 2000 + i)
    (src / "notes.txt").write_text("not a class")
    proc = prepare("folders", src, "--out", tmp_path / "a", "--valid-percent", "0.2", "--test-percent", "0.2",
                   "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert read_label_descriptors(str(tmp_path / "a" / "label_descriptors.csv")).names == ["cat", "dog"]
    splits = {s: load(tmp_path / "a", s) for s in ("train", "valid", "test")}
    assert sorted({r[0] for r in splits["train"][2]}) == [0, 1]  # every class keeps a train clip
    assert splits["valid"][0] and splits["test"][0]  # and every split asked for gets one
    names = sorted(p for s in splits.values() for p in s[0])
    assert names == sorted([f"dog/d{i}.wav" for i in range(5)] + [f"cat/sub/c{i}.flac" for i in range(5)])
    again = ["folders", str(src), "--valid-percent", "0.2", "--test-percent", "0.2", "--out"]
    assert main(again + [str(tmp_path / "b"), "--seed", "3"]) == 0
    for f in ("train.tsv", "valid.tsv", "test.tsv", "train.lbl"):
        assert (tmp_path / "a" / f).read_text() == (tmp_path / "b" / f).read_text()
    others = []
    for seed in (4, 5, 6):
        assert main(again + [str(tmp_path / f"s{seed}"), "--seed", str(seed)]) == 0
        others.append((tmp_path / f"s{seed}" / "valid.tsv").read_text())
    assert any(o != (tmp_path / "a" / "valid.tsv").read_text() for o in others)


def test_fractions_over_one_with_a_default_are_refused_when_parsed(tmp_path, capsys):
    """--valid-percent 0.95 with --test-percent's default 0.1 sums to 1.05: the check counted the
    omitted fraction as 0, so the run read every header, then exited 1. Now exit 2, as any bad
    option, before anything is read or written."""
    noise_file(tmp_path / "classes" / "dog" / "d0.wav", 1000)
    with pytest.raises(SystemExit) as exit_:
        main(["folders", str(tmp_path / "classes"), "--out", str(tmp_path / "out"), "--valid-percent", "0.95"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "--valid-percent 0.95 + --test-percent 0.1 (--test-percent 0.1 when omitted)" in err
    assert not (tmp_path / "out").exists()


def test_csv_with_split_column_and_with_percents(tmp_path, capsys):
    elsewhere = noise_file(tmp_path / "elsewhere" / "far.wav", 1500)
    noise_file(tmp_path / "set" / "clips" / "a.wav", 1100)
    noise_file(tmp_path / "set" / "clips" / "b.flac", 1200)
    table = tmp_path / "set" / "clips.csv"
    table.write_text(f'path,labels,split\nclips/a.wav,dog;bark,train\n{elsewhere},cat,train\n'
                     f'clips/gone.wav,dog,train\n"clips/b.flac",dog,valid\n')
    proc = prepare("csv", table, "--out", tmp_path / "out")
    assert proc.returncode == 0 and "clips/gone.wav: file not found" in proc.stderr
    out = tmp_path / "out"
    assert read_label_descriptors(str(out / "label_descriptors.csv")).names == ["bark", "cat", "dog"]
    assert load(out, "train", multi_label=True) == (["clips/a.wav", str(elsewhere)], [1100, 1500], [[2, 0], [1]])
    assert load(out, "valid") == (["clips/b.flac"], [1200], [[2]])
    assert not (out / "test.tsv").exists()
    assert main(["csv", str(table), "--out", str(tmp_path / "x"), "--valid-percent", "0.5"]) == 1
    assert "has a split column" in capsys.readouterr().err
    for k in range(6):
        noise_file(tmp_path / "set" / "more" / f"c{k}.wav", 900 + k, seed=k)
    plain = tmp_path / "set" / "plain.csv"
    plain.write_text("path,labels\n" + "".join(f"more/c{k}.wav,{k % 2}\n" for k in range(6)))
    args = ["csv", str(plain), "--valid-percent", "0.34", "--test-percent", "0", "--seed", "1", "--out"]
    assert main(args + [str(tmp_path / "p")]) == 0 and main(args + [str(tmp_path / "q")]) == 0
    valid = load(tmp_path / "p", "valid")
    train = load(tmp_path / "p", "train")
    assert valid[2] and sorted({r[0] for r in train[2]}) == [0, 1] and len(valid[0]) + len(train[0]) == 6
    assert valid == load(tmp_path / "q", "valid") and not (tmp_path / "p" / "test.tsv").exists()
