"""The README's fine-tuning commands, run as written by bash from a folder laid out like the
repository root (``config`` and ``mae_ast`` linked): `mae-ast-prepare esc50`, the single
fine-tune + evaluate, and the 5-fold loop with its mean. Relative paths are the README's.
Changed: ``CKPT`` points at a small real pretraining checkpoint, and a shell function
appends CPU-sized overrides to every ``fairseq-hydra-train`` (2 updates, short clips).
The ESC-50 folder is a miniature of the real layout made of the keyword set's spoken words."""

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT

pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text()
SECTION = README.split("## Fine-tuning and evaluation")[1].split("\n## ")[0]
BLOCKS = re.findall(r"```bash\n(.*?)```", SECTION, re.S)
WORDS = ["yes", "no", "up"]
CPU_SIZED = ("common.cpu=true dataset.num_workers=0 optimization.max_update=2 dataset.batch_size=4 "
             "task.target_length=128 distributed_training.distributed_world_size=1 common.log_interval=1")


def mini_esc50(root: Path) -> None:
    """ESC-50-master/meta/esc50.csv + audio/: 5 folds x 3 classes x 2 one-second clips."""
    keywords = ROOT / "data" / "keywords"
    lines = (keywords / "train.tsv").read_text().splitlines()
    audio_root = (keywords / lines[0]).resolve()
    by_word = {w: [audio_root / ln.split("\t")[0] for ln in lines[1:] if f"/{w}_" in ln] for w in WORDS}
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for fold in range(1, 6):
            for target, word in enumerate(WORDS):
                for take in "AB":
                    name = f"{fold}-{100 + target}-{take}-{target}.flac"
                    os.symlink(by_word[word][(fold - 1) * 2 + "AB".index(take)], root / "audio" / name)
                    writer.writerow([name, fold, target, word, False, 100 + target, take])


def bash_env() -> dict:
    return dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def repo_like(folder: Path) -> None:
    """``config`` and ``mae_ast`` linked, the ESC-50 miniature made and prepared."""
    for name in ("config", "mae_ast"):
        os.symlink(ROOT / name, folder / name)
    mini_esc50(folder / "ESC-50-master")


def test_readme_finetuning_commands_run_as_written(tmp_path, patch_checkpoint):
    prepare = next(b for b in BLOCKS if "mae-ast-prepare esc50" in b)
    single = next(b for b in BLOCKS if b.startswith("CKPT="))
    folds = next(b for b in BLOCKS if b.startswith("for k in 1 2 3 4 5"))
    repo_like(tmp_path)
    script = "\n".join([
        "set -euo pipefail",
        f'fairseq-hydra-train() {{ command fairseq-hydra-train "$@" {CPU_SIZED}; }}',
        next(line for line in prepare.splitlines() if line.startswith("mae-ast-prepare esc50")),
        re.sub(r"^CKPT=.*$", f"CKPT={patch_checkpoint}", single, count=1, flags=re.M),
        folds,
    ])
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=bash_env(),
                          timeout=1500)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # the last epoch's number first, the best epoch's labelled as selected on the test clips
    number = r"ESC-50 accuracy \d\.\d{4} \+- \d\.\d{4} over 5 folds"
    assert re.search(number + r" \(last epoch\)\n" + number + r" \(best epoch, selected on these test clips: "
                     r"optimistic\)", proc.stdout), proc.stdout[-2000:]
    assert json.loads((tmp_path / "runs" / "esc50_1" / "test.json").read_text())["n_clips"] == 6  # the single run
    for k in range(1, 6):  # where the README says the files are, and nowhere deeper
        run = tmp_path / "runs" / f"esc50_{k}"
        assert (run / "checkpoints" / "checkpoint_best.pt").exists() and not (run / "runs").exists()
        for c in ("last", "best"):
            result = json.loads((run / f"test_{c}.json").read_text())
            assert result["n_clips"] == 6 and 0 <= result["accuracy"] <= 1
            assert f"checkpoint_{c}.pt" in json.dumps(result["checkpoint"])
        # said at the start of the run too: valid = test, and what validation scores
        log = (run / "hydra_train.log").read_text()
        assert "6 of the 6 valid clips are test clips" in log
        assert "validation scores each clip's first task.target_length=128 frames (1.28 s)" in log
    # said by the README's mae-ast-validate --recipe line: valid = test, and what validation scores
    assert "advice: 6 of the 6 valid clips are test clips" in proc.stdout
    assert "checkpoint_best.pt is selected on the clips it will be scored on" in proc.stdout
    assert "validation scores each clip's first task.target_length=512 frames (5.12 s)" in proc.stdout
    assert "0 of 6 valid clips are longer" in proc.stdout


def documented_base_commands() -> str:
    """The commands in config/finetune/base.yaml's header, as bash lines."""
    header = (ROOT / "config" / "finetune" / "base.yaml").read_text().split("Run, from the repository root")[1]
    lines = header.split("\n")[1:]
    end = next(i for i, ln in enumerate(lines) if not ln.startswith("#  "))
    return "\n".join(ln[len("#   "):] for ln in lines[:end])


def test_base_recipe_commands_place_checkpoints_where_evaluate_looks(tmp_path, patch_checkpoint):
    """base.yaml's documented fine-tune + evaluate, run as written with a relative OUT and
    DATA (a relative checkpoint.save_dir=OUT once nested the checkpoints in OUT/OUT)."""
    commands = documented_base_commands()
    assert "mae-ast-evaluate OUT/checkpoints/" in commands
    repo_like(tmp_path)
    for name, value in (("DATA", "data/esc50/fold1"), ("CKPT", str(patch_checkpoint)), ("OUT", "runs/base")):
        commands = re.sub(rf"\b{name}\b", value, commands)
    script = "\n".join([
        "set -euo pipefail",
        f'fairseq-hydra-train() {{ command fairseq-hydra-train "$@" {CPU_SIZED}; }}',
        "mae-ast-prepare esc50 ESC-50-master --out data/esc50",
        commands,
    ])
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=bash_env(),
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    run = tmp_path / "runs" / "base"
    assert (run / "checkpoints" / "checkpoint_last.pt").exists() and not (run / "runs").exists()
    assert json.loads((run / "test.json").read_text())["n_clips"] == 6
