"""Reliability: resume after SIGKILL, bad files at scale, non-finite losses, and the
validator."""

import logging
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import BIN, DEMO, ROOT, hydra_train, logged, run_cli

pytestmark = pytest.mark.slow

TINY = ["model.encoder_layers=2", "model.decoder_layers=1", "model.encoder_embed_dim=64",
        "model.decoder_embed_dim=64", "model.encoder_ffn_embed_dim=128", "model.encoder_attention_heads=4",
        "model.max_token_length=2000", "distributed_training.distributed_world_size=1",
        "distributed_training.nprocs_per_node=1", "common.cpu=true", "common.log_interval=1"]


def _params(ckpt):
    return torch.load(ckpt, weights_only=True)["model"]


def test_sigkill_and_resume_matches_an_uninterrupted_run(tmp_path):
    args = TINY + ["optimization.max_update=10", "checkpoint.save_interval_updates=3",
                   "checkpoint.keep_interval_updates=1", "dataset.max_tokens=400000",
                   "dataset.required_batch_size_multiple=1", "dataset.num_workers=2",
                   "lr_scheduler.warmup_updates=4", "dataset.validate_interval=1000"]
    straight = tmp_path / "straight"
    proc = hydra_train(straight, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = tmp_path / "killed"
    cmd = [str(BIN / "fairseq-hydra-train"), "--config-dir", str(ROOT / "config" / "pretrain"),
           "--config-name", "mae_ast", f"common.user_dir={ROOT / 'mae_ast'}", f"task.data={DEMO}",
           f"hydra.run.dir={killed}", f"checkpoint.save_dir={killed / 'checkpoints'}", *args]
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    log = killed / "hydra_train.log"
    deadline = time.time() + 300
    while time.time() < deadline:
        if log.exists() and "@ 6 updates" in log.read_text():
            break
        time.sleep(0.2)
    else:
        child.kill()
        pytest.fail("the run never saved at update 6")
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert not any(int(r["num_updates"]) >= 10 for r in logged(killed, "train_inner"))

    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = log.read_text()
    assert "Loaded checkpoint" in text and "(epoch" in text
    resumed = [r for r in logged(killed, "train_inner")]
    updates = [int(r["num_updates"]) for r in resumed]
    assert updates[-1] == 10 and 7 in updates  # continued past the checkpoint at 6
    # learning rate continues: the resumed update 7 has the straight run's lr
    lr_straight = {int(r["num_updates"]): r["lr"] for r in logged(straight, "train_inner")}
    assert all(r["lr"] == lr_straight[int(r["num_updates"])] for r in resumed)

    a = _params(straight / "checkpoints" / "checkpoint_last.pt")
    b = _params(killed / "checkpoints" / "checkpoint_last.pt")
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-6, worst


def make_messy_data(folder, n_good=285):
    """~300 entries, 15 of them broken in the ways AudioSet's are."""
    audio = folder / "audio"
    audio.mkdir(parents=True)
    good = sorted(p.name for p in (DEMO / "audio").glob("*") if p.name.startswith("speech"))
    for name in good:
        shutil.copy(DEMO / "audio" / name, audio / name)
    lengths = {n: sf.info(str(audio / n)).frames for n in good}
    rows = [f"{good[i % len(good)]}\t{lengths[good[i % len(good)]]}" for i in range(n_good)]

    tone = (0.3 * np.sin(np.arange(48000) / 10)).astype(np.float32)
    broken = {}
    for i in range(3):
        broken[f"missing_{i}.flac"] = "file not found"
    for i in range(2):
        sf.write(audio / f"full_{i}.flac", tone, 16000)
        (audio / f"truncated_{i}.flac").write_bytes((audio / f"full_{i}.flac").read_bytes()[:300])
        broken[f"truncated_{i}.flac"] = "could not decode"
        (audio / f"zero_{i}.flac").write_bytes(b"")
        broken[f"zero_{i}.flac"] = "file is empty"
        (audio / f"text_{i}.flac").write_bytes(b"this is not audio\n" * 200)
        broken[f"text_{i}.flac"] = "could not decode"
        _video_only(audio / f"video_{i}.mkv")
        broken[f"video_{i}.mkv"] = "no audio stream"
        bad = tone.copy()
        bad[100 * (i + 1)] = np.inf if i else np.nan
        sf.write(audio / f"nan_{i}.wav", bad, 16000, subtype="FLOAT")
        broken[f"nan_{i}.wav"] = "NaN or inf"
        sf.write(audio / f"silence_{i}.flac", np.zeros(48000, np.float32), 16000)
        broken[f"silence_{i}.flac"] = "digital silence"
    rows += [f"{name}\t48000" for name in broken]
    rng = np.random.default_rng(0)
    rng.shuffle(rows)
    for split, part in (("train", rows), ("valid", rows[:16])):
        with open(folder / f"{split}.tsv", "w") as f:
            f.write("audio\n" + "\n".join(part) + "\n")
    return broken


def _video_only(path):
    import av

    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def messy_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("messy")
    return folder, make_messy_data(folder)


def test_training_runs_through_bad_files_naming_each_once(tmp_path, messy_data):
    data, broken = messy_data
    run = tmp_path / "run"
    proc = hydra_train(run, *TINY, "optimization.max_epoch=1", "optimization.max_update=1000",
                       "dataset.max_tokens=1600000", "dataset.required_batch_size_multiple=1",
                       "dataset.num_workers=2", "dataset.validate_interval=1000", data=data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "hydra_train.log").read_text()
    skips = [line for line in log.splitlines() if "skipping" in line and "/train.tsv:" in line]
    for name, reason in broken.items():
        named = [line for line in skips if f"/{name} (" in line]
        assert len(named) == 1, (name, named)
        assert reason in named[0]
    epoch = logged(run, "train")[-1]
    assert int(float(epoch["train_skipped_clips"])) == len(broken)
    assert int(float(epoch["train_bsz"])) > 0


def test_validate_cli_finds_every_broken_file(messy_data):
    data, broken = messy_data
    proc = run_cli(BIN / "mae-ast-validate", data, "--workers", "2")
    assert proc.returncode == 1
    for name, reason in broken.items():
        lines = [x for x in proc.stderr.splitlines() if f"/{name}:" in x]
        assert lines and reason in lines[0], name
    table = proc.stdout.splitlines()
    row = next(line for line in table if line.startswith("train"))
    assert row.split()[1:3] == ["300", "15"]
    assert "FAILED" in proc.stdout


def test_validate_cli_passes_clean_data():
    proc = run_cli(BIN / "mae-ast-validate", DEMO, "--workers", "1")
    assert proc.returncode == 0 and "OK: every file decodes" in proc.stdout


def test_nonfinite_loss_names_the_batch_files(caplog):
    from types import SimpleNamespace

    from conftest import tiny_model
    from mae_ast.criterions.mae_ast_criterion import MAE_AST_Criterion
    from mae_ast.data import MAE_AST_Dataset
    from mae_ast.tasks.mae_ast_pretraining import MAE_AST_Pretraining_Task

    task = MAE_AST_Pretraining_Task(SimpleNamespace(feature_type="fbank", feature_rate=100))
    task.datasets["train"] = ds = MAE_AST_Dataset(str(DEMO / "train.tsv"))
    model = tiny_model()
    with torch.no_grad():
        model.post_extract_proj.weight[0, 0] = float("nan")
    batch = ds.collater([ds[3], ds[5]])

    class Opt:
        def backward(self, loss):
            loss.backward()

    with caplog.at_level(logging.ERROR):
        loss, _, _ = task.train_step(batch, model, MAE_AST_Criterion(task, 10.0, 1.0), Opt(), 7)
    assert not torch.isfinite(loss)
    assert "non-finite loss at update 7: sample ids [3, 5]" in caplog.text
    assert ds.paths[3] in caplog.text and ds.paths[5] in caplog.text


def test_validate_reads_label_files_as_training_does(tmp_path):
    """Issue 21 item 18: an unknown label in train.lbl was reported "OK"."""
    import shutil

    from mae_ast.data.labels import write_label_descriptors

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DEMO / "train.tsv", data / "train.tsv")
    lines = (data / "train.tsv").read_text().splitlines()
    root = lines[0]
    (data / "train.tsv").write_text("\n".join([str((DEMO / root).resolve()) if not os.path.isabs(root) else root]
                                              + lines[1:]) + "\n")
    entries = [line.split("\t")[0] for line in lines[1:]]
    write_label_descriptors(str(data / "label_descriptors.csv"), ["speech", "environment"])
    labels = [f"{e}\t{'speech' if 'speech' in e else 'environment'}" for e in entries]
    (data / "train.lbl").write_text("\n".join(labels) + "\n")
    cmd = [str(BIN / "mae-ast-validate"), str(data), "--workers", "1", "--splits", "train"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    labels[3] = f"{entries[3]}\tbirdsong"
    (data / "train.lbl").write_text("\n".join(labels) + "\n")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "FAILED" in proc.stdout and "labels unusable" in proc.stdout
    assert "train.lbl:4" in proc.stderr and "birdsong" in proc.stderr
