"""Data folders that cannot leak: clip identity across splits, hash-stable splits, KS1's
silence crops and test set, movable folders, and the keys written beside each manifest."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_files import noise_file
from mae_ast.data import identity
from mae_ast.data.datadir import SplitError, check_disjoint, split_indices
from mae_ast.data.labels import read_label_descriptors, read_labels
from mae_ast.data.manifest import read_manifest
from mae_ast.tools import manifest as manifest_tool
from mae_ast.tools.prepare import main


def entries(data: Path, split: str) -> list[str]:
    return read_manifest(str(data / f"{split}.tsv")).entries


def split_of(data: Path) -> dict[str, str]:
    """Manifest entry -> split, over every split written."""
    return {e: s for s in ("train", "valid", "test") if (data / f"{s}.tsv").exists() for e in entries(data, s)}


# ---------------------------------------------------------------- 7: one clip under two names


@pytest.mark.parametrize("how", ["symlink", "copy"])
def test_a_symlink_or_copy_across_splits_is_a_leak_naming_both(tmp_path, capsys, how):
    clips = tmp_path / "set" / "clips"
    noise_file(clips / "a.wav", 4000, seed=1)
    noise_file(clips / "b.wav", 4000, seed=2)
    if how == "symlink":
        os.symlink(clips / "a.wav", clips / "a_again.wav")
    else:
        shutil.copy(clips / "a.wav", clips / "a_again.wav")
    table = tmp_path / "set" / "clips.csv"
    table.write_text("path,labels,split\nclips/a.wav,dog,train\nclips/b.wav,cat,train\n"
                     "clips/a_again.wav,dog,test\n")
    assert main(["csv", str(table), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert str(clips / "a.wav") in err and str(clips / "a_again.wav") in err and "test" in err
    assert not (tmp_path / "out" / "test.tsv").exists()


def test_check_disjoint_keeps_esc50s_valid_equals_test_and_distinct_clips(tmp_path):
    a, b, c = (noise_file(tmp_path / f"{n}.wav", 3000, seed=i) for i, n in enumerate("abc"))
    check_disjoint({"train": [str(a)], "valid": [str(b)], "test": [str(b)]}, "x")  # ESC-50's protocol
    check_disjoint({"train": [str(a), str(b)], "test": [str(c)]}, "x")
    with pytest.raises(SplitError, match="listed twice in train"):
        check_disjoint({"train": [str(a), str(a)]}, "x")


# ---------------------------------------------------------------- 8: adding clips moves no clip


def test_adding_a_clip_per_class_moves_no_earlier_clip(tmp_path):
    src, out = tmp_path / "classes", tmp_path / "out"
    for k, cls in enumerate(("cat", "dog", "owl")):
        for i in range(8):
            noise_file(src / cls / f"{cls}{i}.wav", 2000 + i, seed=100 * k + i)
    args = ["folders", str(src), "--out", str(out), "--valid-percent", "0.2", "--test-percent", "0.2"]
    assert main(args) == 0
    before = split_of(out)
    assert set(before.values()) == {"train", "valid", "test"}
    for k, cls in enumerate(("cat", "dog", "owl")):
        noise_file(src / cls / f"{cls}_new.wav", 2500, seed=1000 + k)
    assert main(args) == 0
    after = split_of(out)
    assert {e: after[e] for e in before} == before  # every earlier clip stays in its split
    assert len(after) == len(before) + 3


def test_split_rule_is_per_clip_and_keeps_a_train_clip_per_class():
    keys = [f"k{i}.wav" for i in range(200)]
    parts = split_indices(keys, 0.1, 0.1, seed=0)
    grown = split_indices(keys + [f"new{i}.wav" for i in range(50)], 0.1, 0.1, seed=0)
    for split, idx in parts.items():
        assert set(idx) <= set(grown[split])
    assert 5 < len(parts["valid"]) < 40 and 5 < len(parts["test"]) < 40
    tiny = split_indices(["a", "b"], 0.5, 0.5, seed=0, groups=[0, 0])
    assert len(tiny["train"]) == 1 and len(tiny["valid"]) + len(tiny["test"]) == 1


# ---------------------------------------------------------------- 4, 11: KS1


def speech_commands(root: Path) -> Path:
    for k, word in enumerate(("yes", "no", "bed")):
        for i in range(3):
            noise_file(root / word / f"s{i}_nohash_0.wav", 4000 + i, seed=10 * k + i)
    noise_file(root / "_background_noise_" / "white_noise.wav", 80000, seed=7)
    noise_file(root / "_background_noise_" / "pink_noise.wav", 64000, seed=8)
    (root / "validation_list.txt").write_text("yes/s1_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/s2_nohash_0.wav\n")
    return root


def _int16(path: Path) -> np.ndarray:
    return sf.read(path, dtype="int16")[0]


def _where(noise: dict[str, np.ndarray], crop: np.ndarray) -> tuple[str, int]:
    """Noise file and offset a crop was cut from (its samples match there exactly)."""
    for name, wave in noise.items():
        windows = np.lib.stride_tricks.sliding_window_view(wave, 16)
        hits = np.flatnonzero((windows == crop[:16]).all(axis=1))
        for start in hits:
            if np.array_equal(wave[start : start + len(crop)], crop):
                return name, int(start)
    raise AssertionError("crop not found in any noise file")


def test_ks1_silence_of_each_split_comes_from_its_own_part_of_the_noise(tmp_path):
    src, out = speech_commands(tmp_path / "sc"), tmp_path / "ks1"
    assert main(["speechcommands", str(src), "--out", str(out), "--variant", "ks1", "--silence-per-split", "6"]) == 0
    noise = {p.name: _int16(p) for p in (src / "_background_noise_").glob("*.wav")}
    spans: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for split in ("train", "valid", "test"):
        for e in entries(out, split):
            if e.startswith("_silence_/"):
                name, start = _where(noise, _int16(out / e))
                spans.setdefault(name, {}).setdefault(split, []).append((start, start + 16000))
    assert sum(len(v) for s in spans.values() for v in s.values()) == 18
    for by_split in spans.values():
        for a in by_split:
            for b in by_split:
                if a < b:
                    assert all(e1 <= s2 or e2 <= s1 for s1, e1 in by_split[a] for s2, e2 in by_split[b]), (a, b)


def test_ks1_folder_moves_with_its_silence_class(tmp_path):
    src, out = speech_commands(tmp_path / "sc"), tmp_path / "ks1"
    assert main(["speechcommands", str(src), "--out", str(out), "--variant", "ks1", "--silence-per-split", "2"]) == 0
    assert (out / "train.tsv").read_text().splitlines()[0] == "."
    moved = tmp_path / "elsewhere" / "ks1"
    shutil.move(str(out), str(moved))
    labels = read_label_descriptors(str(moved / "label_descriptors.csv"))
    m = read_manifest(str(moved / "train.tsv"))
    rows = read_labels(str(moved / "train.lbl"), labels, m.entries, False)
    silence = [p for p, r in zip(m.paths, rows) if r == [11]]
    assert len(silence) == 2 and all(os.path.isfile(p) and p.startswith(str(moved)) for p in silence)
    assert all(os.path.isfile(p) for p in m.paths)


def test_ks1_takes_superbs_v001_test_set_folder(tmp_path):
    src, out = speech_commands(tmp_path / "sc"), tmp_path / "ks1"
    test_set = tmp_path / "speech_commands_test_set_v0.01"
    for k, name in enumerate(("yes", "_unknown_", "_silence_")):
        noise_file(test_set / name / f"t{k}.wav", 16000, seed=500 + k)
    assert main(["speechcommands", str(src), "--out", str(out), "--variant", "ks1", "--silence-per-split", "2",
                 "--test-set", str(test_set)]) == 0
    labels = read_label_descriptors(str(out / "label_descriptors.csv"))
    m = read_manifest(str(out / "test.tsv"))
    rows = read_labels(str(out / "test.lbl"), labels, m.entries, False)
    assert sorted(zip(map(os.path.basename, m.paths), rows)) == [("t0.wav", [0]), ("t1.wav", [10]), ("t2.wav", [11])]
    everywhere = [e for s in ("train", "valid", "test") for e in entries(out, s)]
    assert not any(e.endswith("no/s2_nohash_0.wav") for e in everywhere)  # testing_list.txt: left out, as SUPERB
    assert not list((out / "_silence_").glob("test_*"))
    assert main(["speechcommands", str(src), "--out", str(tmp_path / "x"), "--test-set", str(test_set)]) == 1


# ---------------------------------------------------------------- 19, sidecars


def test_prepare_notes_classes_with_test_clips_and_no_train_clip(tmp_path, capsys):
    for i, n in enumerate(("a", "b", "c")):
        noise_file(tmp_path / "set" / f"{n}.wav", 3000, seed=i)
    table = tmp_path / "set" / "clips.csv"
    table.write_text("path,labels,split\na.wav,dog,train\nb.wav,cat,test\nc.wav,dog,test\n")
    assert main(["csv", str(table), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "test has clips of 1 class(es) with no train clip ('cat')" in err


def test_manifest_and_prepare_write_keys_and_remove_a_stale_splits(tmp_path):
    src = tmp_path / "audio"
    for i in range(30):
        noise_file(src / f"c{i}.wav", 2000 + i, seed=i)
    out = tmp_path / "m"
    assert manifest_tool.main([str(src), "--out", str(out), "--valid-percent", "0.2", "--test-percent", "0.2"]) == 0
    for split in ("train", "valid", "test"):
        m = read_manifest(str(out / f"{split}.tsv"))
        with np.load(out / f"{split}.keys.npz") as z:
            assert np.array_equal(z["content_keys"], identity.clip_keys(m.paths)[1])
    assert manifest_tool.main([str(src), "--out", str(out), "--valid-percent", "0.2"]) == 0
    assert not (out / "test.keys.npz").exists() and not (out / "test.tsv").exists()
    folders = tmp_path / "classes"
    for i in range(6):
        noise_file(folders / ("x" if i % 2 else "y") / f"f{i}.wav", 2000, seed=50 + i)
    assert main(["folders", str(folders), "--out", str(tmp_path / "p"), "--test-percent", "0.3"]) == 0
    assert all((tmp_path / "p" / f"{s}.keys.npz").exists() for s in ("train", "valid", "test"))
