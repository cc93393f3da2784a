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


def test_readme_finetuning_commands_run_as_written(tmp_path, patch_checkpoint):
    prepare = next(b for b in BLOCKS if "mae-ast-prepare esc50" in b)
    single = next(b for b in BLOCKS if b.startswith("CKPT="))
    folds = next(b for b in BLOCKS if b.startswith("for k in 1 2 3 4 5"))
    for name in ("config", "mae_ast"):
        os.symlink(ROOT / name, tmp_path / name)
    mini_esc50(tmp_path / "ESC-50-master")
    script = "\n".join([
        "set -euo pipefail",
        f'fairseq-hydra-train() {{ command fairseq-hydra-train "$@" {CPU_SIZED}; }}',
        next(line for line in prepare.splitlines() if line.startswith("mae-ast-prepare esc50")),
        re.sub(r"^CKPT=.*$", f"CKPT={patch_checkpoint}", single, count=1, flags=re.M),
        folds,
    ])
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=1500)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert re.search(r"ESC-50 accuracy \d\.\d{4} \+- \d\.\d{4} over 5 folds", proc.stdout), proc.stdout[-2000:]
    for k in range(1, 6):  # where the README says the files are, and nowhere deeper
        run = tmp_path / "runs" / f"esc50_{k}"
        assert (run / "checkpoints" / "checkpoint_best.pt").exists() and not (run / "runs").exists()
        result = json.loads((run / "test.json").read_text())
        assert result["n_clips"] == 6 and 0 <= result["accuracy"] <= 1
