"""The downstream contract: a label belongs to its clip, splits are what the tools last
wrote, and a fine-tuning run refuses settings and resumes that would give a wrong number.
Each test failed on the code before this contract (the issue's item number is noted)."""

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from audio_files import noise_file
from conftest import BIN, DEMO, ROOT, run_cli as run, write_data
from conftest import finetune as _finetune
from mae_ast.data.classification_dataset import ClassificationDataset
from mae_ast.data.labels import LabelError, read_label_descriptors, read_labels

KEYWORDS = ROOT / "data" / "keywords"


def finetune(run_dir: Path, data: Path, ckpt: Path, *overrides: str, config: str = "base"):
    return _finetune(run_dir, data, ckpt, *overrides, config=config, check=False)


def dataset(data: Path, split: str) -> ClassificationDataset:
    labels = read_label_descriptors(str(data / "label_descriptors.csv"))
    return ClassificationDataset(str(data / f"{split}.tsv"), str(data / f"{split}.lbl"), labels, target_length=100)


def half_second_noise(path: Path, seed: int = 0) -> Path:
    return noise_file(path, 8000, seed=seed)


# ---------------------------------------------------------------- labels belong to their clips


def test_reordered_label_lines_are_realigned_by_the_clip_they_name(tmp_path):
    """Item 1: reversing test.lbl's rows changed every clip's label, silently."""
    data = tmp_path / "kw"
    shutil.copytree(KEYWORDS, data, ignore=shutil.ignore_patterns("audio"))
    for split in ("train", "valid", "test"):  # the manifests' relative root must still find the audio
        text = (data / f"{split}.tsv").read_text().split("\n", 1)
        (data / f"{split}.tsv").write_text(f"{KEYWORDS / 'audio'}\n{text[1]}")
    expected = dataset(data, "test").labels
    lines = (data / "test.lbl").read_text().splitlines()
    (data / "test.lbl").write_text("\n".join(reversed(lines)) + "\n")
    assert dataset(data, "test").labels == expected
    assert len({tuple(x) for x in expected}) == 10  # not a constant: the order matters

    # A label file of other clips is refused, naming its file and line.
    (data / "test.lbl").write_text("".join(line.replace("test/", "train/") + "\n" for line in lines))
    with pytest.raises(LabelError, match=r"test\.lbl:1: clip 'train/en-029/yes_0' is not an entry of .*test\.tsv"):
        dataset(data, "test")
    # One line naming a clip twice, or a line of another clip among right ones.
    swapped = lines[:]
    swapped[3] = lines[2].split("\t")[0] + "\t3"
    (data / "test.lbl").write_text("\n".join(swapped) + "\n")
    with pytest.raises(LabelError, match=r"test\.lbl:4: clip 'test/en-029/up_0' is already labelled on line 3"):
        dataset(data, "test")


def test_clips_are_named_by_path_file_name_stem_or_youtube_id(tmp_path):
    labels = read_label_descriptors(str(KEYWORDS / "label_descriptors.csv"))
    entries = ["a/Y--abcdefghi_30.000.flac", "b/Yxxxxxxxxxxx.flac"]
    for ids in (["b/Yxxxxxxxxxxx.flac", "a/Y--abcdefghi_30.000.flac"],
                ["Yxxxxxxxxxxx.flac", "Y--abcdefghi_30.000.flac"],
                ["b/Yxxxxxxxxxxx", "a/Y--abcdefghi_30.000"], ["xxxxxxxxxxx", "--abcdefghi"]):
        (tmp_path / "x.lbl").write_text(f"{ids[0]}\tno\n{ids[1]}\tyes\n")
        assert read_labels(str(tmp_path / "x.lbl"), labels, entries, False) == [[0], [1]], ids


def test_numeric_class_names_have_one_order_and_ambiguous_labels_are_refused(tmp_path):
    """Item 4: folders 1, 2, 3, 10, 11, 12 were text-sorted by `prepare folders` (index 3 = "12")
    and number-sorted by `prepare csv`; a hand-written "3" silently meant class "12"."""
    src = tmp_path / "src"
    for n, name in enumerate(["1", "2", "3", "10", "11", "12"]):
        for k in range(3):
            half_second_noise(src / name / f"c{k}.wav", seed=10 * n + k)
    (tmp_path / "clips.csv").write_text("path,labels\n" + "".join(
        f"src/{name}/c{k}.wav,{name}\n" for name in ["1", "2", "3", "10", "11", "12"] for k in range(3)))
    for layout, source in (("folders", src), ("csv", tmp_path / "clips.csv")):
        out = tmp_path / layout
        proc = run(BIN / "mae-ast-prepare", layout, source, "--out", out, "--valid-percent", "0", "--test-percent", "0")
        assert proc.returncode == 0, proc.stderr
        labels = read_label_descriptors(str(out / "label_descriptors.csv"))
        assert labels.names == ["1", "2", "3", "10", "11", "12"], layout
        ds = dataset(out, "train")  # what the tool wrote reads back to the folder each clip came from
        assert [labels.names[row[0]] for row in ds.labels] == [Path(p).parent.name for p in ds.paths]
    with pytest.raises(KeyError, match=r"label '3' is ambiguous.*class index 3 is '10'.*name of class 2"):
        labels.lookup("3")
    assert labels.lookup("class_3") == 2 and labels.lookup("12") == 5  # a mid, and a name no index reaches


def test_data2vec_descriptors_without_header_bom_and_blank_lines(tmp_path):
    """Items 9 and 18: data2vec/EAT's header-less descriptors were refused; a BOM broke .tsv and
    .lbl; a blank line inside a .lbl was reported as a count mismatch at the last line."""
    (tmp_path / "label_descriptors.csv").write_text("0,/m/09x0r,Speech\n1,/m/0ytgt,Child speech, kid speaking\n")
    labels = read_label_descriptors(str(tmp_path / "label_descriptors.csv"))
    assert labels.names == ["Speech", "Child speech, kid speaking"] and labels.mids == ["/m/09x0r", "/m/0ytgt"]
    (tmp_path / "x.lbl").write_text("\ufeffa.wav\t0\nb.wav\t/m/0ytgt\n", encoding="utf-8")
    assert read_labels(str(tmp_path / "x.lbl"), labels, ["a.wav", "b.wav"], False) == [[0], [1]]
    (tmp_path / "bom.tsv").write_text(f"\ufeff{DEMO / 'audio'}\nspeech_00.flac\t1\n", encoding="utf-8")
    from mae_ast.data.manifest import read_manifest

    assert read_manifest(str(tmp_path / "bom.tsv")).root == str(DEMO / "audio")
    (tmp_path / "x.lbl").write_text("0\n\n1\n")
    with pytest.raises(LabelError, match=r"x\.lbl:2: blank line"):
        read_labels(str(tmp_path / "x.lbl"), labels, 3, False)


# ---------------------------------------------------------------- the tools own their folders


def test_prepare_and_manifest_remove_splits_an_earlier_run_left(tmp_path):
    """Item 2: rerunning with --test-percent 0 left the old test.tsv/.lbl, whose clips were now
    in train, and mae-ast-evaluate scored them."""
    src = tmp_path / "src"
    for name in ("cat", "dog"):
        for k in range(10):
            half_second_noise(src / name / f"{k}.wav", seed=k + (10 if name == "dog" else 0))
    out = tmp_path / "out"
    assert run(BIN / "mae-ast-prepare", "folders", src, "--out", out, "--test-percent", "0.2").returncode == 0
    assert (out / "test.tsv").exists() and (out / "test.lbl").exists()
    proc = run(BIN / "mae-ast-prepare", "folders", src, "--out", out, "--test-percent", "0")
    assert proc.returncode == 0 and "removed, left by an earlier run:" in proc.stderr
    assert f"{out / 'test.tsv'}, {out / 'test.lbl'}" in proc.stderr
    assert not (out / "test.tsv").exists() and not (out / "test.lbl").exists()

    man = tmp_path / "man"
    assert run(BIN / "mae-ast-manifest", src, "--out", man, "--test-percent", "0.2").returncode == 0
    assert (man / "test.tsv").exists()
    proc = run(BIN / "mae-ast-manifest", src, "--out", man)
    assert proc.returncode == 0 and f"removed, left by an earlier run: {man / 'test.tsv'}" in proc.stderr
    assert not (man / "test.tsv").exists()


def test_csv_leaks_and_split_names_are_refused(tmp_path):
    """Items 8 and 19: the same file in train and test, a duplicated row, split names VALID/dev."""
    for k in range(4):
        half_second_noise(tmp_path / f"{k}.wav", seed=k)

    def prepare(rows: str) -> subprocess.CompletedProcess:
        (tmp_path / "c.csv").write_text("path,labels,split\n" + rows)
        return run(BIN / "mae-ast-prepare", "csv", tmp_path / "c.csv", "--out", tmp_path / "o")

    proc = prepare("0.wav,a,train\n1.wav,b,train\n2.wav,a,test\n0.wav,a,test\n")
    assert proc.returncode == 1 and "c.csv:5: 0.wav is already listed on line 2" in proc.stderr
    proc = prepare("0.wav,a,train\n1.wav,b,train\n./1.wav,b,train\n")
    assert proc.returncode == 1 and "c.csv:4: ./1.wav is already listed on line 3" in proc.stderr
    proc = prepare("0.wav,a,train\n1.wav,b,dev\n")
    assert proc.returncode == 1 and "c.csv:3: split 'dev' is not one of train, valid, test" in proc.stderr
    proc = prepare("0.wav,a,train\n1.wav,b,VALID\n")
    assert proc.returncode == 0 and (tmp_path / "o" / "valid.tsv").exists()
    assert not (tmp_path / "o" / "VALID.tsv").exists()


def test_prepare_folders_names_folders_that_are_no_class_and_keeps_a_train_split(tmp_path):
    """Item 19: an empty class folder was dropped silently; a folder whose only file is
    unreadable stayed a class with 0 clips; --test-percent 0.99 wrote an empty train split."""
    src = tmp_path / "src"
    for k in range(4):
        half_second_noise(src / "cat" / f"{k}.wav", seed=k)
    (src / "empty").mkdir()
    (src / "broken").mkdir()
    (src / "broken" / "x.wav").write_bytes(b"RIFF not audio")
    proc = run(BIN / "mae-ast-prepare", "folders", src, "--out", tmp_path / "o", "--valid-percent", "0.25",
               "--test-percent", "0")
    assert proc.returncode == 0, proc.stderr
    assert "empty holds no audio file: not a class" in proc.stderr
    assert "broken none of its 1 audio file(s) is readable: not a class" in proc.stderr
    assert read_label_descriptors(str(tmp_path / "o" / "label_descriptors.csv")).names == ["cat"]
    proc = run(BIN / "mae-ast-prepare", "folders", src, "--out", tmp_path / "p", "--valid-percent", "0",
               "--test-percent", "0.99")  # every class keeps a train clip
    assert proc.returncode == 0 and len((tmp_path / "p" / "train.tsv").read_text().splitlines()) == 2
    half_second_noise(tmp_path / "single" / "cat" / "0.wav")
    proc = run(BIN / "mae-ast-prepare", "folders", tmp_path / "single", "--out", tmp_path / "q", "--valid-percent",
               "0", "--test-percent", "0.99")
    assert proc.returncode == 1 and "no clip left for train" in proc.stderr


# ---------------------------------------------------------------- fine-tuning runs


@pytest.fixture(scope="module")
def ft_data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("contract") / "single")


@pytest.mark.slow
def test_resume_onto_other_classes_or_a_truncated_checkpoint_is_refused(tmp_path, ft_data, patch_checkpoint):
    """Items 3 and 13: a rerun into a save_dir with other classes resumed the old head and best
    score; a truncated checkpoint_last.pt gave a bare torch error."""
    proc = finetune(tmp_path, ft_data, patch_checkpoint, "optimization.max_update=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    other = tmp_path / "other"
    shutil.copytree(ft_data, other)
    text = (other / "label_descriptors.csv").read_text().splitlines()
    (other / "label_descriptors.csv").write_text("\n".join([text[0], text[2].replace("1,", "0,", 1),
                                                            text[1].replace("0,", "1,", 1), text[3]]) + "\n")
    proc = finetune(tmp_path, other, patch_checkpoint, "optimization.max_update=2")
    assert proc.returncode != 0
    assert "would resume a classifier trained on other classes: the same 3 names in another order" in proc.stderr
    assert "class 0 was 'speech', now 'environment'" in proc.stderr

    last = tmp_path / "ck" / "checkpoint_last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    proc = finetune(tmp_path, ft_data, patch_checkpoint, "optimization.max_update=2")
    assert proc.returncode != 0 and f"this run would resume from {last}, which cannot be used" in proc.stderr
    assert "probably truncated" in proc.stderr
    assert "checkpoint_best.pt" in proc.stderr and "new checkpoint.save_dir" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("overrides, message", [
    (["task.multi_label=true"], "best_checkpoint_metric=accuracy is not logged by multi-label"),  # item 10
    (["task.target_length=1"], r"task.target_length=1 is shorter than one patch \(16 frames\)"),  # item 14
    (["task.freqm=200"], r"task.freqm=200 must lie in 0..128"),
    (["task.timem=300"], r"task.timem=300 must lie in 0..272"),
])
def test_settings_that_cannot_work_are_refused_at_build(tmp_path, ft_data, patch_checkpoint, overrides, message):
    """Items 10 and 14: multi-label with base.yaml's accuracy metric trained an epoch then
    raised KeyError; target_length/freqm/timem out of range crashed mid-training or passed."""
    data = write_data(tmp_path / "multi", multi_label=True) if "task.multi_label=true" in overrides else ft_data
    proc = finetune(tmp_path, data, patch_checkpoint, "optimization.max_update=1", *overrides)
    assert proc.returncode != 0 and re.search(message, proc.stderr), proc.stderr[-1500:]
    assert not (tmp_path / "ck" / "checkpoint_last.pt").exists()


@pytest.mark.slow
def test_fbank_cache_serves_fine_tuning(tmp_path, ft_data, patch_checkpoint):
    """Item 11: a cache was refused for fine-tuning ("written with min/max_keep 32000/None")."""
    cache = tmp_path / "cache"
    proc = run(BIN / "mae-ast-cache", ft_data, "--out", cache, "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = finetune(tmp_path, ft_data, patch_checkpoint, "optimization.max_update=2", f"task.fbank_cache={cache}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "reading features from the cache" in (tmp_path / "hydra_train.log").read_text()


# ---------------------------------------------------------------- found in review


def test_data2vec_start_end_label_lines_are_read_in_manifest_order(tmp_path):
    """data2vec's AudioSet converter writes start<TAB>end<TAB>labels: the first field is a
    time, not a clip name, so the file is read in manifest order as data2vec reads it."""
    labels = read_label_descriptors(str(KEYWORDS / "label_descriptors.csv"))
    (tmp_path / "x.lbl").write_text("30.000\t40.000\tno\n30.000\t40.000\tyes\n")
    assert read_labels(str(tmp_path / "x.lbl"), labels, ["a.flac", "b.flac"], False) == [[1], [0]]


def test_a_mid_given_twice_is_refused(tmp_path):
    (tmp_path / "d.csv").write_text("index,mid,display_name\n0,/m/a,A\n1,/m/a,B\n")
    with pytest.raises(LabelError, match=r"d\.csv:3: mid '/m/a' already given on line 2"):
        read_label_descriptors(str(tmp_path / "d.csv"))


def test_every_class_keeps_a_train_clip():
    from mae_ast.data.datadir import split_indices

    keys = [f"c{i}" for i in range(12)]
    groups = [0, 0] + [1] * 10  # a 2-clip class would give round(0.6) + round(0.6) = 2 to valid/test
    parts = split_indices(keys, 0.3, 0.3, seed=0, groups=groups)
    assert any(groups[i] == 0 for i in parts["train"]) and any(groups[i] == 1 for i in parts["train"])
    assert split_indices(keys, 0.3, 0.3, seed=0, groups=groups) == parts  # same seed, same split


def test_spawned_ranks_find_relative_paths_through_hydras_record(tmp_path, monkeypatch):
    """fairseq spawns one process per GPU; hydra is not initialised there and the working
    directory is the run folder, so a relative task.data is resolved against the launch
    folder hydra recorded there; a record of another run folder (a copy) is not used."""
    from mae_ast.tasks.run_checks import launch_path

    run_dir, copy = tmp_path / "runs" / "x", tmp_path / "runs" / "copy"
    for folder in (run_dir, copy):
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "hydra.yaml").write_text(
            f"hydra:\n  runtime:\n    cwd: {tmp_path}\n    output_dir: {run_dir}\n")
    monkeypatch.chdir(run_dir)
    assert launch_path("data/esc50") == str(tmp_path / "data" / "esc50")
    assert launch_path("/abs/data") == "/abs/data"
    monkeypatch.chdir(copy)
    assert launch_path("data/esc50") == "data/esc50"
    monkeypatch.chdir(tmp_path)  # no record: not a run folder
    assert launch_path("data/esc50") == "data/esc50"


def test_resume_checks_continue_once_and_the_head_norm(tmp_path):
    import torch

    from mae_ast.tasks.run_checks import RunConfigError, check_resume

    old = tmp_path / "old.pt"  # a classifier checkpoint with a LayerNorm head
    torch.save({"cfg": {"model": {"encoder": {"encoder_layers": 1}, "class_names": ["a", "b"], "multi_label": False,
                                  "head_norm": "layernorm"}},
                "model": {"backbone.post_extract_proj.weight": torch.zeros(1), "head.weight": torch.zeros(1)}}, old)
    checkpoint = SimpleNamespace(restore_file="checkpoint_last.pt", checkpoint_suffix="", save_dir=str(tmp_path / "ck"),
                                 continue_once=str(old), finetune_from_model=None)
    root = SimpleNamespace(checkpoint=checkpoint)
    check_resume(root, ["a", "b"], False, "layernorm")
    with pytest.raises(RunConfigError, match="head normalises with layernorm, but this run builds batchnorm"):
        check_resume(root, ["a", "b"], False, "batchnorm")
    with pytest.raises(RunConfigError, match="other classes"):
        check_resume(root, ["b", "a"], False, "layernorm")


def test_a_save_dir_holding_only_another_runs_checkpoints_is_refused(tmp_path):
    """No checkpoint_last.pt to resume, but another run's checkpoint_best.pt (or epoch / best-k
    files): fairseq would start afresh and overwrite them. A resumed run's own files pass."""
    import torch

    from mae_ast.tasks.run_checks import RunConfigError, check_pretraining_resume, check_resume

    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "run.lock").write_text("host 1\n")  # the lock and keys files are no checkpoints
    (ck / "provenance").mkdir()
    config = dict(restore_file="checkpoint_last.pt", checkpoint_suffix="", save_dir=str(ck), continue_once=None,
                  finetune_from_model=None, no_save=False)
    root = SimpleNamespace(checkpoint=SimpleNamespace(**config))
    check_resume(root, ["a", "b"], False, "layernorm")  # an empty folder: a fresh run
    classifier = {"cfg": {"model": {"encoder": {"encoder_layers": 1}, "class_names": ["a", "b"], "multi_label": False,
                                    "head_norm": "layernorm"}},
                  "model": {"backbone.post_extract_proj.weight": torch.zeros(1), "head.weight": torch.zeros(1)}}
    for name in ("checkpoint_best.pt", "checkpoint3.pt", "checkpoint.best_accuracy_0.9.pt"):
        torch.save(classifier, ck / name)
        before = (ck / name).read_bytes()
        for check in (lambda: check_resume(root, ["a", "b"], False, "layernorm"),
                      lambda: check_pretraining_resume(root, None, {})):
            with pytest.raises(RunConfigError, match="would overwrite another run's checkpoints") as err:
                check()
            assert name in str(err.value) and "no checkpoint_last.pt to resume" in str(err.value)
            assert "new checkpoint.save_dir" in str(err.value) and "delete them" in str(err.value)
        assert (ck / name).read_bytes() == before
    # a first launch from another file (continue_once / finetune_from_model) into that folder
    old = tmp_path / "old.pt"
    torch.save(classifier, old)
    elsewhere = SimpleNamespace(checkpoint=SimpleNamespace(**{**config, "finetune_from_model": str(old)}))
    with pytest.raises(RunConfigError, match=re.escape(f"starts from {old}")):
        check_resume(elsewhere, ["a", "b"], False, "layernorm")
    # checkpoint.no_save=true writes nothing there
    check_resume(SimpleNamespace(checkpoint=SimpleNamespace(**{**config, "no_save": True})), ["a", "b"], False,
                 "layernorm")
    # the run resumes its checkpoint_last.pt (or an explicit restore_file there): its siblings are its own
    torch.save(classifier, ck / "checkpoint_last.pt")
    check_resume(root, ["a", "b"], False, "layernorm")
    (ck / "checkpoint_last.pt").unlink()
    explicit = SimpleNamespace(checkpoint=SimpleNamespace(**{**config, "restore_file": str(ck / "checkpoint_best.pt")}))
    check_resume(explicit, ["a", "b"], False, "layernorm")
