"""The README's three pretraining commands (the original's), run with the real
fairseq-hydra-train on the demo audio: only the paths, max_update and a tiny encoder
changed, plus common.cpu=true. Each writes a checkpoint that reloads."""

import re
import shlex
from types import SimpleNamespace

import pytest
import torch

from conftest import DEMO, ROOT, hydra_train, logged

pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text()
COMMANDS = [b for b in re.findall(r"```\n(fairseq-hydra-train.*?)```", README, re.S)]


def seed_overrides(block: str, run_dir) -> list[str]:
    args = shlex.split(block.replace("\\\n", " "))[1:]
    out = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--config-dir", "--config-name"):
            skip = True  # hydra_train() passes the repo's config
            continue
        if arg.startswith(("common.user_dir=", "task.data=", "hydra.run.dir=")):
            continue  # paths: hydra_train() sets them
        arg = arg.replace("optimization.max_update=550000", "optimization.max_update=2")
        arg = arg.replace("model.encoder_layers=12", "model.encoder_layers=1")
        out.append(arg)
    return out + ["common.cpu=true"]


def test_readme_holds_the_three_seed_commands():
    assert len(COMMANDS) == 3
    assert [re.search(r'task.mask_type="(\w+)"', c).group(1) for c in COMMANDS] == \
        ["chunk_mask", "random_mask", "retain_spans"]


@pytest.mark.parametrize("index,expected_mask", [(0, (0.74, 0.76)), (1, (0.74, 0.76)), (2, (0.15, 0.45))])
def test_seed_command_trains_and_checkpoint_reloads(tmp_path, index, expected_mask):
    run = tmp_path / "run"
    proc = hydra_train(run, *seed_overrides(COMMANDS[index], run), fresh=True)  # as a user starts it
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    train = logged(run, "train")
    assert train and int(train[-1]["train_num_updates"]) == 2
    assert expected_mask[0] <= float(train[-1]["train_mask_ratio"]) <= expected_mask[1]

    ckpt = run / "checkpoints" / "checkpoint_last.pt"
    from fairseq import checkpoint_utils

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)])
    model = models[0].eval()
    assert cfg.model.encoder_layers == 1 and cfg.task.mask_type == COMMANDS[index].split('mask_type="')[1].split('"')[0]
    x = torch.randn(2, 300, 128)
    out = model(x, padding_mask=torch.zeros(2, 300, dtype=torch.bool), mask=False, features_only=True)
    assert out["x"].shape[-1] == 768 and len(out["hidden_states"]) == 1

    # The same file loads with weights_only, and strictly in s3prl's copy of the original.
    state = torch.load(ckpt, weights_only=True)
    assert state["cfg"]["common"]["fp16"] is False  # the seed config's fp16, off CUDA (common.cpu=true)
    orig_mod = pytest.importorskip("s3prl.upstream.mae_ast.mae_ast")
    orig = orig_mod.MAE_AST(SimpleNamespace(**state["cfg"]["model"]), SimpleNamespace(**state["cfg"]["task"]))
    orig.load_state_dict(state["model"], strict=True)
    with torch.no_grad():
        ref = orig.eval()(x, padding_mask=torch.zeros(2, 300, dtype=torch.bool), mask=False, features_only=True)
    assert (ref["x"] - out["x"]).abs().max() < 1e-4


def test_short_clip_is_skipped_in_a_real_run(tmp_path):
    """A clip shorter than one patch in the manifest: the run goes on, names it, counts it."""
    import shutil

    import numpy as np
    import soundfile as sf

    data = tmp_path / "data"
    shutil.copytree(DEMO, data)
    sf.write(data / "audio" / "short.flac", np.zeros(2000, np.float32) + 0.01, 16000)
    (data / "audio" / "broken.flac").write_bytes(b"not audio at all" * 100)
    with open(data / "train.tsv", "a") as f:  # true lengths: a wrong one would be reported as truncation
        f.write("short.flac\t2000\nbroken.flac\t170000\n")
    run = tmp_path / "run"
    # min_sample_size=0 keeps the short clip in the manifest; multiple 1 keeps it in a batch
    # (all 26 clips fit one batch; with 8, the 2 shortest would be left out).
    proc = hydra_train(run, "model.encoder_layers=1", "model.decoder_layers=1", "common.cpu=true",
                       "task.min_sample_size=0", "dataset.required_batch_size_multiple=1",
                       "distributed_training.distributed_world_size=1", "dataset.num_workers=0",
                       "optimization.max_update=3", "dataset.max_tokens=8388608", data=data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "hydra_train.log").read_text()
    assert "short.flac" in log and "shorter than one patch" in log
    assert "broken.flac" in log and "could not decode" in log
    assert int(logged(run, "train")[-1]["train_skipped_clips"]) >= 2
