"""Provenance records (mae_ast.provenance), with real fairseq-hydra-train runs: what a
checkpoint was trained on, resume refusing other data / a live run folder / another
shape, and evaluate/predict reporting overlap with training (issue 21)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import BIN, DEMO, hydra_train, run_cli
from mae_ast import provenance
from mae_ast.data import identity
from conftest import finetune, write_data

FAST = ["optimization.max_update=1"]


def fails(run: Path, data: Path, ckpt: Path, *overrides: str) -> str:
    with pytest.raises(AssertionError) as err:
        finetune(run, data, ckpt, *overrides)
    return str(err.value)


def other_fold(folder: Path, data: Path) -> Path:
    """A data folder with the same classes and other clips: train and test swapped."""
    shutil.copytree(data, folder)
    for a, b in (("train", "test"),):
        for ext in ("tsv", "lbl"):
            x, y = (folder / f"{a}.{ext}").read_text(), (folder / f"{b}.{ext}").read_text()
            (folder / f"{a}.{ext}").write_text(y)
            (folder / f"{b}.{ext}").write_text(x)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("prov") / "fold1")


@pytest.fixture(scope="module")
def run(tmp_path_factory, data, patch_checkpoint) -> Path:
    folder = tmp_path_factory.mktemp("prov_run")
    finetune(folder, data, patch_checkpoint, *FAST)
    return folder


def cli(tool: str, *args) -> subprocess.CompletedProcess:
    return run_cli(BIN / tool, *args, timeout=300)


# ---- the record ------------------------------------------------------------------------

def test_record_keys_inline_or_in_a_fingerprinted_file(tmp_path, monkeypatch):
    splits = {s: (str(DEMO / f"{s}.tsv"), None) for s in ("train", "valid")}
    record = provenance.build_record("pretraining", str(DEMO), splits, "train", ["valid"])
    assert record["splits"]["train"]["n_clips"] == 24
    inline = provenance.to_state(record, str(tmp_path))
    assert "keys" in inline and not (tmp_path / "provenance").exists()
    monkeypatch.setattr(provenance, "INLINE_MAX_CLIPS", 10)
    stored = provenance.to_state(record, str(tmp_path / "run"))
    keys_file = Path(stored["keys_file"])
    assert keys_file.parent == tmp_path / "run" / "provenance" and "keys" not in stored
    for state in (inline, stored):
        back = provenance.load({"task_state": {"provenance": state}})
        for split in ("train", "valid"):
            for kind in provenance.KEY_KINDS:
                assert np.array_equal(back["splits"][split][kind], record["splits"][split][kind])
    # a run folder moved whole: the file is found beside the checkpoint
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "run", moved)
    assert provenance.load({"task_state": {"provenance": stored}}, str(moved / "checkpoint_last.pt"))
    with pytest.raises(provenance.ProvenanceError, match="missing"):
        provenance.load({"task_state": {"provenance": stored}}, str(tmp_path / "elsewhere.pt"))
    z = dict(np.load(moved / "provenance" / keys_file.name))
    z["train__path_keys"] = z["train__path_keys"][1:]
    np.savez(moved / "provenance" / keys_file.name, **z)
    with pytest.raises(provenance.ProvenanceError, match="altered"):
        provenance.load({"task_state": {"provenance": stored}}, str(moved / "checkpoint_last.pt"))
    assert provenance.describe({"model": {}})["status"] == "unknown"  # released checkpoints


def test_a_moved_data_folder_is_the_same_data_and_swapped_audio_is_not(tmp_path):
    def record(folder: Path) -> dict:
        splits = {s: (str(folder / f"{s}.tsv"), str(folder / f"{s}.lbl")) for s in ("train", "valid")}
        return provenance.build_record("finetuning", str(folder), splits, "train", ["valid"])

    def moved(folder: Path, data: Path) -> Path:
        shutil.copytree(data, folder)
        shutil.copytree(DEMO / "audio", folder / "audio")
        for split in ("train", "valid", "test"):
            lines = (folder / f"{split}.tsv").read_text().splitlines(keepends=True)
            (folder / f"{split}.tsv").write_text(f"{folder / 'audio'}\n" + "".join(lines[1:]))
        return folder

    data = write_data(tmp_path / "data")
    ours = record(data)
    assert provenance.same_data(ours, record(moved(tmp_path / "moved", data))) == []
    # The same files under the same names, two of them with each other's audio: other data.
    swapped = moved(tmp_path / "swapped", data)
    a, b = [swapped / "audio" / line.split("\t")[0] for line in (data / "train.tsv").read_text().splitlines()[1:3]]
    a.rename(tmp_path / "tmp.flac")
    b.rename(a)
    (tmp_path / "tmp.flac").rename(b)
    problems = provenance.same_data(ours, record(swapped))
    assert len(problems) == 1 and problems[0].startswith("split train: the checkpoint was trained on"), problems


def test_a_clip_listed_twice_in_the_scored_split_is_said_before_the_number(tmp_path):
    from mae_ast.tools._common import provenance_notes

    ckpt = tmp_path / "model.pt"
    torch.save({"model": {}}, ckpt)  # no record: the repeat is said all the same
    clips = [str(DEMO / "audio" / line.split("\t")[0]) for line in (DEMO / "valid.tsv").read_text().splitlines()[1:4]]
    # the same file by another spelling of its path is the same clip
    again = os.path.join(os.path.dirname(clips[0]), ".", os.path.basename(clips[0]))
    report = provenance.overlap_report({}, str(ckpt), clips + [again])
    assert report["repeated_clips"] == 1 and report["n_scored_clips"] == 4
    _, notes = provenance_notes(report, "test")
    assert any(n.startswith("split test lists a clip again 1 time(s)") for n in notes), notes
    assert provenance.overlap_report({}, str(ckpt), clips)["repeated_clips"] == 0


@pytest.mark.slow
def test_checkpoints_record_their_data_and_the_encoders_pretraining(run, data, patch_checkpoint):
    pre = torch.load(patch_checkpoint, weights_only=True)
    summary = provenance.describe(pre)
    assert summary["kind"] == "pretraining" and summary["splits"]["train"]["n_clips"] == 24
    assert summary["splits"]["train"]["manifest"] == str((DEMO / "train.tsv").resolve())

    state = torch.load(run / "ck" / "checkpoint_last.pt", weights_only=True)
    summary = provenance.describe(state)
    json.dumps(summary)  # JSON-able for the model card and the probe
    assert summary["kind"] == "finetuning" and summary["updates"] == 1
    train = summary["splits"]["train"]
    assert train["manifest"] == str(data / "train.tsv") and train["labels"] == str(data / "train.lbl")
    assert train["labels_key"] == provenance.hex64(identity.text_key(str(data / "train.lbl")))
    assert summary["pretraining"]["status"] == "recorded"
    assert summary["pretraining"]["checkpoint"] == str(patch_checkpoint.resolve())
    assert summary["pretraining"]["splits"]["train"]["n_clips"] == 24
    # the test clips were in neither training set; the demo's train clips in both
    test = [str(DEMO / "audio" / line.split("\t")[0]) for line in (data / "test.tsv").read_text().splitlines()[1:]]
    train = [str(DEMO / "audio" / line.split("\t")[0]) for line in (data / "train.tsv").read_text().splitlines()[1:]]
    ckpt = str(run / "ck" / "checkpoint_last.pt")
    assert provenance.overlap_report(state, ckpt, test)["training"] == 0
    report = provenance.overlap_report(state, ckpt, train[:5])
    assert report["overlap_with_training"]["finetuning"]["splits"]["train"]["by_path"] == 5
    assert report["overlap_with_training"]["pretraining"]["splits"]["train"]["by_content"] == 5
    assert report["training"] == 5 and report["checkpoint_hash"] == provenance.checkpoint_hash(ckpt)


# ---- item 1: resume onto other data, and one live run per folder ----------------------------

@pytest.mark.slow
def test_resume_into_a_run_folder_trained_on_other_data_is_refused(run, data, patch_checkpoint, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    fold2 = other_fold(tmp_path / "fold2", data)
    message = fails(folder, fold2, patch_checkpoint, "optimization.max_update=2")
    assert "trained on other data" in message
    assert str(data / "train.tsv") in message and str(fold2 / "train.tsv") in message
    # The same clips moved (audio copied elsewhere, the manifests' root rewritten): it resumes.
    # (The same folder resumes too: test_finetune's resume test runs through this check.)
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    shutil.copytree(DEMO / "audio", moved / "audio")
    for split in ("train", "valid", "test"):
        lines = (moved / f"{split}.tsv").read_text().splitlines(keepends=True)
        (moved / f"{split}.tsv").write_text(f"{moved / 'audio'}\n" + "".join(lines[1:]))
    finetune(folder, moved, patch_checkpoint, "optimization.max_update=2")
    assert provenance.describe(torch.load(folder / "ck" / "checkpoint_last.pt", weights_only=True))["updates"] == 2


@pytest.mark.slow
def test_a_run_folder_holding_only_another_runs_best_checkpoint_is_refused(run, data, patch_checkpoint, tmp_path):
    """The other run's checkpoint_last.pt removed, its checkpoint_best.pt (and an epoch file)
    left: the run stops before its first save replaces them, naming them."""
    (tmp_path / "ck").mkdir()
    for name in ("checkpoint_best.pt", "checkpoint3.pt"):
        shutil.copy(run / "ck" / "checkpoint_last.pt", tmp_path / "ck" / name)
    before = (tmp_path / "ck" / "checkpoint_best.pt").read_bytes()
    message = fails(tmp_path, other_fold(tmp_path / "fold2", data), patch_checkpoint, *FAST)
    assert "would overwrite another run's checkpoints (checkpoint3.pt, checkpoint_best.pt)" in message
    assert "new checkpoint.save_dir" in message and "delete them" in message
    assert (tmp_path / "ck" / "checkpoint_best.pt").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "ck").glob("checkpoint*.pt")) == ["checkpoint3.pt", "checkpoint_best.pt"]


@pytest.mark.slow
def test_a_run_folder_in_use_by_a_live_run_is_refused_and_a_stale_lock_taken_over(data, patch_checkpoint, tmp_path):
    import socket

    (tmp_path / "ck").mkdir()
    lock = tmp_path / "ck" / "run.lock"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.write_text(f"{socket.gethostname()} {live.pid}\n")
        message = fails(tmp_path, data, patch_checkpoint, *FAST)
        assert f"in use by a live run (PID {live.pid}" in message
        assert not (tmp_path / "ck" / "checkpoint_last.pt").exists()
    finally:
        os.kill(live.pid, signal.SIGKILL)
        live.wait()
    finetune(tmp_path, data, patch_checkpoint, *FAST)  # its PID has ended: taken over
    assert (tmp_path / "ck" / "checkpoint_last.pt").exists() and not lock.exists()  # released at exit


# ---- item 15: resume onto another model shape -----------------------------------------------

@pytest.mark.slow
def test_resume_with_another_encoder_shape_says_what_differs(patch_checkpoint, tmp_path):
    """A folder holding the 2-layer patch run, resumed with 3 encoder layers."""
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(patch_checkpoint, tmp_path / "checkpoints" / "checkpoint_last.pt")
    proc = hydra_train(
        tmp_path, "model.encoder_layers=3", "model.decoder_layers=1", "task.mask_type=chunk_mask",
        *(f"model.ast_kernel_{k}_{d}=16" for k in ("size", "stride") for d in ("time", "chan")),
        "distributed_training.distributed_world_size=1", "common.cpu=true", "dataset.num_workers=0",
        "optimization.max_update=4", "dataset.max_tokens=1000000")
    assert proc.returncode != 0
    assert "model.encoder_layers: 2 in the checkpoint, 3 in this run" in proc.stderr, proc.stderr[-2000:]
    assert "new checkpoint.save_dir" in proc.stderr and "Unexpected key" not in proc.stderr


# ---- evaluate and predict report what the checkpoint saw (design; items 6, 10, 20) ----------

def tool(module, *args) -> int:
    try:
        return module.main([str(a) for a in args])
    except SystemExit as exit_:
        return int(exit_.code)


@pytest.mark.slow
def test_evaluate_reports_provenance_overlap_and_selection(run, data, tmp_path, capsys):
    from mae_ast.tools import evaluate

    ckpt = run / "ck" / "checkpoint_last.pt"
    out = tmp_path / "test.json"
    assert tool(evaluate, ckpt, data, "--split", "test", "--json", out, "--device", "cpu") == 0
    result = json.loads(out.read_text())
    assert result["overlap_with_training"] == 0 and result["selected_on_scored_clips"] is False
    assert result["checkpoint_hash"] == provenance.checkpoint_hash(str(ckpt))
    prov = result["provenance"]
    assert prov["trained_on"]["finetuning"]["splits"]["train"]["manifest"] == str(data / "train.tsv")
    assert prov["overlap_with_training"]["pretraining"]["splits"]["train"] == {
        "by_path": 0, "by_content": 0, "either": 0, "n_clips": 24}

    assert f"trained on: finetuning {data}; pretraining " in capsys.readouterr().err  # said on the console too
    assert tool(evaluate, ckpt, data, "--split", "train", "--json", out, "--device", "cpu") == 3
    err = capsys.readouterr().err
    assert "WARNING" in err and "TRAINING data" in err and "--allow-overlap" in err
    result = json.loads(out.read_text())
    n = result["split_clips"]
    assert result["overlap_with_training"] == n
    assert result["provenance"]["overlap_with_training"]["finetuning"]["splits"]["train"]["by_path"] == n
    assert tool(evaluate, ckpt, data, "--split", "train", "--device", "cpu", "--allow-overlap") == 0

    # item 6: the valid split is the one the checkpoint was selected on
    assert tool(evaluate, ckpt, data, "--split", "valid", "--json", out, "--device", "cpu") == 0
    assert "selected on the clips it is scored on" in capsys.readouterr().err
    assert json.loads(out.read_text())["selected_on_scored_clips"] is True


@pytest.mark.slow
def test_evaluate_scores_silent_clips_and_refuses_to_leave_clips_out(run, data, tmp_path, capsys):
    """Item 10: an all-zero clip is scored; an unreadable one makes the exit non-zero."""
    import soundfile as sf
    from mae_ast.tools import evaluate

    folder = tmp_path / "silent"
    shutil.copytree(data, folder)
    sf.write(folder / "silence.wav", np.zeros(32000, np.float32), 16000)
    tsv, lbl = (folder / "test.tsv").read_text(), (folder / "test.lbl").read_text()
    n = len(tsv.splitlines()) - 1
    (folder / "test.tsv").write_text(tsv + f"{folder / 'silence.wav'}\t32000\n")
    (folder / "test.lbl").write_text(lbl + f"{folder / 'silence.wav'}\tspeech\n")
    out = tmp_path / "m.json"
    ckpt = run / "ck" / "checkpoint_last.pt"
    assert tool(evaluate, ckpt, folder, "--json", out, "--device", "cpu") == 0
    result = json.loads(out.read_text())
    assert result["n_clips"] == result["split_clips"] == n + 1 and result["skipped_clips"] == 0

    (folder / "test.tsv").write_text(tsv + f"{folder / 'silence.wav'}\t32000\nmissing.flac\t16000\n")
    (folder / "test.lbl").write_text(lbl + f"{folder / 'silence.wav'}\tspeech\nmissing.flac\tspeech\n")
    capsys.readouterr()
    assert tool(evaluate, ckpt, folder, "--json", out, "--device", "cpu") == 1
    assert "--allow-skipped" in capsys.readouterr().err
    result = json.loads(out.read_text())
    assert (result["split_clips"], result["n_clips"], result["skipped_clips"]) == (n + 2, n + 1, 1)
    assert tool(evaluate, ckpt, folder, "--device", "cpu", "--allow-skipped") == 0


@pytest.mark.slow
def test_predict_takes_a_manifest_and_reports_overlap_with_training(run, data, tmp_path, capsys):
    """Item 20 (a .tsv is its clips, as in mae-ast-extract) and the overlap check."""
    import soundfile as sf
    from mae_ast.tools import predict

    ckpt = run / "ck" / "checkpoint_last.pt"
    out = tmp_path / "p.json"
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    assert tool(predict, ckpt, data / "test.tsv", silent, "--json", out, "--device", "cpu") == 0
    assert f"mae-ast-predict: trained on: finetuning {data}" in capsys.readouterr().err
    report = json.loads(out.read_text())
    assert len(report["files"]) == len((data / "test.tsv").read_text().splitlines())  # the test clips + silence
    assert report["overlap_with_training"] == 0 and report["checkpoint_hash"] == provenance.checkpoint_hash(str(ckpt))

    train_clip = DEMO / "audio" / (data / "train.tsv").read_text().splitlines()[1].split("\t")[0]
    copy = tmp_path / "renamed.flac"
    shutil.copy(train_clip, copy)  # a byte copy under another name is the same clip
    capsys.readouterr()
    assert tool(predict, ckpt, copy, "--json", out, "--device", "cpu") == 3
    assert "TRAINING data" in capsys.readouterr().err
    overlap = json.loads(out.read_text())["provenance"]["overlap_with_training"]
    assert overlap["finetuning"]["splits"]["train"]["by_content"] == 1
    assert overlap["finetuning"]["splits"]["train"]["by_path"] == 0
    assert tool(predict, ckpt, copy, "--device", "cpu", "--allow-overlap") == 0


# ---- item 5: the fbank cache knows which audio files it was computed from -------------------

def test_fbank_cache_refuses_regenerated_audio_and_another_folder(tmp_path):
    import soundfile as sf
    from mae_ast.data import MAE_AST_Dataset
    from mae_ast.data.fbank_cache import CacheError, write_cache

    def folder(name: str, seed: int) -> Path:
        (tmp_path / name / "audio").mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for clip in ("a.wav", "b.wav"):
            sf.write(tmp_path / name / "audio" / clip, 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
        (tmp_path / name / "valid.tsv").write_text("audio\na.wav\t16000\nb.wav\t16000\n")
        return tmp_path / name

    one, two = folder("one", 0), folder("two", 1)  # identical manifests, other audio
    cache = str(tmp_path / "cache")
    write_cache(MAE_AST_Dataset(str(one / "valid.tsv")), "valid", cache)
    MAE_AST_Dataset(str(one / "valid.tsv")).use_cache(cache, "valid")
    with pytest.raises(CacheError, match=f"computed from the audio under {one / 'audio'}.*under {two / 'audio'}"):
        MAE_AST_Dataset(str(two / "valid.tsv")).use_cache(cache, "valid")
    # regenerated under the same name and length: same size, new mtime
    sf.write(one / "audio" / "b.wav", 0.2 * np.random.default_rng(5).standard_normal(16000).astype(np.float32), 16000)
    os.utime(one / "audio" / "b.wav", ns=(1, 1))
    with pytest.raises(CacheError, match=r"1 of 2 clips changed .*b\.wav \(manifest line 3: same size, modified"):
        MAE_AST_Dataset(str(one / "valid.tsv")).use_cache(cache, "valid")
