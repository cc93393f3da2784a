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
    # the keyword clips are 1 s: none is cut by validation's 128-frame start crop
    assert "validation scores each clip's first task.target_length=128 frames (1.28 s)" in log
    assert "0 of 20 valid clips are longer" in log
    assert "are test clips" not in log  # valid and test are disjoint here
    assert logged(tmp_path, "train")[-1]["train_num_updates"] == "8"


def write_manifest(path, root, entries):
    path.write_text("\n".join([str(root)] + [f"{name}\t{size}" for name, size in entries]) + "\n")


def test_valid_split_of_test_clips_is_reported(tmp_path):
    """valid = test (ESC-50's and AudioSet's recipes), also when the test list reaches the
    same files through a symlinked folder; a disjoint valid split gets no warning."""
    from mae_ast.data.manifest import read_manifest
    from mae_ast.tasks.recipe_checks import selected_on_test

    audio = ROOT / "data" / "keywords" / "audio"
    lines = (ROOT / "data" / "keywords" / "valid.tsv").read_text().splitlines()[1:]
    entries = [tuple(line.split("\t")) for line in lines]
    os.symlink(audio, tmp_path / "linked")
    write_manifest(tmp_path / "valid.tsv", audio, entries)
    write_manifest(tmp_path / "test.tsv", tmp_path / "linked", entries[:5])
    write_manifest(tmp_path / "other.tsv", audio, [tuple(ln.split("\t")) for ln in
                                                   (ROOT / "data" / "keywords" / "test.tsv").read_text().splitlines()[1:]])
    valid, test, other = (read_manifest(str(tmp_path / f"{s}.tsv")) for s in ("valid", "test", "other"))
    warning = selected_on_test(valid, test)
    assert warning.startswith(f"5 of the {len(entries)} valid clips are test clips")
    assert "checkpoint_best.pt is selected on the clips it will be scored on" in warning
    assert selected_on_test(other, test) is None and selected_on_test(valid, None) is None


def test_validation_crop_counts_clips_in_their_own_rate(tmp_path):
    """A 1 s clip at 44.1 kHz is 98 frames at 16 kHz, not 274: the count reads each file's
    rate; a split too large to read every header says how to count instead."""
    import numpy as np
    import soundfile as sf

    from mae_ast.data.features import FeatureSpec
    from mae_ast.data.manifest import read_manifest
    from mae_ast.tasks import recipe_checks
    from mae_ast.tasks.recipe_checks import validation_crop_note

    for name, rate, seconds in (("a.wav", 44100, 1.0), ("b.wav", 16000, 2.0), ("c.flac", 8000, 0.5)):
        sf.write(tmp_path / name, np.zeros(int(rate * seconds), dtype=np.float32) + 0.01, rate)
    write_manifest(tmp_path / "valid.tsv", tmp_path, [("a.wav", 44100), ("b.wav", 32000), ("c.flac", 4000)])
    valid = read_manifest(str(tmp_path / "valid.tsv"))
    important, note = validation_crop_note(valid, FeatureSpec(), 128)
    assert important and "first task.target_length=128 frames (1.28 s)" in note
    assert "1 of 3 valid clips are longer" in note and "--crop windows" in note
    important, note = validation_crop_note(valid, FeatureSpec(), 256)
    assert not important and "0 of 3 valid clips are longer" in note and "not scored" not in note
    recipe_checks.MAX_COUNTED_CLIPS, saved = 2, recipe_checks.MAX_COUNTED_CLIPS
    try:
        important, note = validation_crop_note(valid, FeatureSpec(), 256)
    finally:
        recipe_checks.MAX_COUNTED_CLIPS = saved
    assert important and "the 3 valid clips were not counted" in note and "n_cropped" in note
