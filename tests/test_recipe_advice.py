"""Advice on fine-tuning recipes (mae_ast.tools.recipe_advice), printed by mae-ast-validate --recipe."""

import os
import shutil
import subprocess

import pytest
from omegaconf import OmegaConf

from conftest import BIN, ROOT, run_cli
from mae_ast.tools.recipe_advice import plan_run, run_warnings


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


def validate(*args: str) -> subprocess.CompletedProcess:
    return run_cli(BIN / "mae-ast-validate", *args)


def test_validate_prints_the_advice_on_a_recipe():
    """Asked 100 updates, max_epoch=1 stops at 8 (120 clips in batches of 16); the 20-clip
    valid split, a save dir inside itself and what validation scores are said; the data
    checks' exit code is unchanged by advice."""
    proc = validate("data/keywords", "--workers", "1", "--recipe", "config/finetune/base.yaml",
                    "--set", "optimization.max_epoch=1", "--set", "optimization.max_update=100",
                    "--set", "task.target_length=128", "--set", "hydra.run.dir=runs/x",
                    "--set", "checkpoint.save_dir=runs/x")
    assert proc.returncode == 0, proc.stderr[-3000:]
    advice = [line[len("advice: "):] for line in proc.stdout.splitlines() if line.startswith("advice: ")]
    assert "max_epoch=1 stops this run at about 8 updates" in advice[0]
    assert advice[1].startswith("the valid split has 20 clips")
    assert advice[2].startswith("checkpoint.save_dir=runs/x is relative to the run folder")
    assert "checkpoints go to runs/x/runs/x" in advice[2]
    # the keyword clips are 1 s: none is cut by validation's 128-frame start crop
    assert advice[3] == ("validation scores each clip's first task.target_length=128 frames (1.28 s), as "
                         "mae-ast-evaluate's default --crop start: 0 of 20 valid clips are longer")
    assert len(advice) == 4  # valid and test are disjoint here: no "are test clips"
    plain = validate("data/keywords", "--workers", "1", "--recipe", "config/finetune/base.yaml",
                     "--set", "optimization.max_epoch=0", "--set", "checkpoint.save_dir=/abs")
    assert not any("stops this run" in ln or "save_dir" in ln for ln in plain.stdout.splitlines())


def test_validate_refuses_a_missing_recipe_and_a_bare_set():
    assert validate("data/keywords", "--recipe", "nope.yaml").returncode == 2
    assert "--set takes KEY=VALUE" in validate("data/keywords", "--set", "a=1").stderr


def write_manifest(path, root, entries):
    path.write_text("\n".join([str(root)] + [f"{name}\t{size}" for name, size in entries]) + "\n")


def test_valid_split_of_test_clips_is_reported(tmp_path):
    """valid = test (ESC-50's and AudioSet's recipes), also when the test list reaches the
    same files through a symlinked folder; a disjoint valid split gets no warning."""
    from mae_ast.data.manifest import read_manifest
    from mae_ast.tasks.validation_notes import selected_on_test

    audio = ROOT / "data" / "keywords" / "audio"
    lines = (ROOT / "data" / "keywords" / "valid.tsv").read_text().splitlines()[1:]
    entries = [tuple(line.split("\t")) for line in lines]
    os.symlink(audio, tmp_path / "linked")
    write_manifest(tmp_path / "valid.tsv", audio, entries)
    write_manifest(tmp_path / "test.tsv", tmp_path / "linked", entries[:5])
    keyword_rows = (ROOT / "data" / "keywords" / "test.tsv").read_text().splitlines()[1:]
    write_manifest(tmp_path / "other.tsv", audio, [tuple(ln.split("\t")) for ln in keyword_rows])
    valid, other = (read_manifest(str(tmp_path / f"{s}.tsv")) for s in ("valid", "other"))
    warning = selected_on_test(str(tmp_path), valid)
    assert warning.startswith(f"5 of the {len(entries)} valid clips are test clips by real path or content")
    assert "checkpoint_best.pt is selected on the clips it will be scored on" in warning
    assert selected_on_test(str(tmp_path), other, ("other", "test")) is None
    assert selected_on_test(str(tmp_path), valid, ("valid", "absent")) is None


def test_valid_clip_that_is_a_byte_copy_of_a_test_clip_is_reported(tmp_path):
    """Matched as every leak check matches (``provenance.overlap_counts``): a test clip copied
    under another name into valid is a test clip."""
    from mae_ast.data.manifest import read_manifest
    from mae_ast.tasks.validation_notes import selected_on_test

    audio = ROOT / "data" / "keywords" / "audio"
    rows = [tuple(ln.split("\t")) for ln in (ROOT / "data" / "keywords" / "test.tsv").read_text().splitlines()[1:]]
    (tmp_path / "audio").mkdir()
    shutil.copy(audio / rows[0][0], tmp_path / "audio" / "renamed.wav")
    write_manifest(tmp_path / "test.tsv", audio, rows[:3])
    write_manifest(tmp_path / "valid.tsv", tmp_path / "audio", [("renamed.wav", rows[0][1])])
    warning = selected_on_test(str(tmp_path), read_manifest(str(tmp_path / "valid.tsv")))
    assert warning is not None and warning.startswith("1 of the 1 valid clips are test clips")


def test_validation_crop_counts_clips_in_their_own_rate(tmp_path):
    """A 1 s clip at 44.1 kHz is 98 frames at 16 kHz, not 274: the count reads each file's
    rate; a split too large to read every header says how to count instead."""
    import numpy as np
    import soundfile as sf

    from mae_ast.data.features import FeatureSpec
    from mae_ast.data.manifest import read_manifest
    from mae_ast.tasks import validation_notes
    from mae_ast.tasks.validation_notes import validation_crop_note

    for name, rate, seconds in (("a.wav", 44100, 1.0), ("b.wav", 16000, 2.0), ("c.flac", 8000, 0.5)):
        sf.write(tmp_path / name, np.zeros(int(rate * seconds), dtype=np.float32) + 0.01, rate)
    write_manifest(tmp_path / "valid.tsv", tmp_path, [("a.wav", 44100), ("b.wav", 32000), ("c.flac", 4000)])
    valid = read_manifest(str(tmp_path / "valid.tsv"))
    important, note = validation_crop_note(valid, FeatureSpec(), 128)
    assert important and "first task.target_length=128 frames (1.28 s)" in note
    assert "1 of 3 valid clips are longer" in note and "--crop windows" in note
    important, note = validation_crop_note(valid, FeatureSpec(), 256)
    assert not important and "0 of 3 valid clips are longer" in note and "not scored" not in note
    validation_notes.MAX_COUNTED_CLIPS, saved = 2, validation_notes.MAX_COUNTED_CLIPS
    try:
        important, note = validation_crop_note(valid, FeatureSpec(), 256)
    finally:
        validation_notes.MAX_COUNTED_CLIPS = saved
    assert "the 3 valid clips were not counted" in note and "n_cropped" in note and "not scored" in note
