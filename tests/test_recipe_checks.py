"""The fine-tuning recipe warnings (mae_ast.tasks.recipe_checks) on the shipped recipes."""

import os
import subprocess

import pytest
from omegaconf import OmegaConf

from conftest import BIN, ROOT, logged
from mae_ast.tasks.recipe_checks import plan_run, run_warnings


def recipe(name: str, **overrides):
    cfg = OmegaConf.load(ROOT / "config" / "finetune" / f"{name}.yaml")
    # fairseq's defaults that the recipes leave out
    cfg.optimization.setdefault("update_freq", [1])
    cfg.optimization.setdefault("max_update", 0)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_plan_counts_the_last_partial_batch_and_the_first_limit():
    assert plan_run(350, 16, 1, 1, max_epoch=30, max_update=800).total_updates == 660  # the 22 x 30
    assert plan_run(350, 16, 1, 1, max_epoch=30, max_update=800).epoch_limited
    assert plan_run(350, 16, 1, 1, max_epoch=0, max_update=800) == plan_run(350, 16, 1, 1, 100, 800)
    assert plan_run(350, 16, 2, 2, max_epoch=0, max_update=0).updates_per_epoch == 6
    assert plan_run(350, 16, 1, 1, max_epoch=0, max_update=0).total_updates is None


def test_max_epoch_cap_is_reported():
    warnings = run_warnings(recipe("base", **{"optimization.max_update": 800}), 350, 400)
    assert len(warnings) == 1 and "max_epoch=30 stops this run at about 660 updates" in warnings[0]
    assert run_warnings(recipe("base", **{"optimization.max_update": 800, "optimization.max_epoch": 0}),
                        350, 400) == []


def test_warmup_longer_than_the_run_is_reported():
    small = run_warnings(recipe("speechcommands"), 350, 400)  # 3 updates an epoch, 90 in all
    assert any("warmup_updates=2652" in w and "peaks at 3%" in w for w in small), small
    assert run_warnings(recipe("speechcommands"), 84843, 9981) == []  # the set it was written for


@pytest.mark.parametrize("clips, warned", [(20, True), (99, True), (100, False)])
def test_small_valid_split_points_to_the_last_checkpoint(clips, warned):
    warnings = run_warnings(recipe("base"), 1000, clips)
    assert any("checkpoint_last.pt" in w for w in warnings) == warned


def test_training_logs_the_warnings(frame_checkpoint, tmp_path):
    """Through fairseq-hydra-train: asked 100 updates, max_epoch=1 stops at 8 (120 clips in
    batches of 16), and the 20-clip valid split is flagged."""
    cmd = [str(BIN / "fairseq-hydra-train"), "--config-dir", str(ROOT / "config" / "finetune"), "--config-name",
           "base", f"common.user_dir={ROOT / 'mae_ast'}", f"task.data={ROOT / 'data' / 'keywords'}",
           f"model.pretrained_checkpoint={frame_checkpoint}", f"hydra.run.dir={tmp_path}",
           f"checkpoint.save_dir={tmp_path / 'ck'}", "common.cpu=true", "dataset.num_workers=0",
           "task.target_length=128", "optimization.max_epoch=1", "optimization.max_update=100",
           "distributed_training.distributed_world_size=1"]
    env = dict(os.environ, HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "hydra_train.log").read_text()
    assert "max_epoch=1 stops this run at about 8 updates" in log
    assert "the valid split has 20 clips" in log
    assert logged(tmp_path, "train")[-1]["train_num_updates"] == "8"
