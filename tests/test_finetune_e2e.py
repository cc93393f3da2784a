"""Acceptance test of fine-tuning, end to end through the real CLIs, on CPU.

A tiny MAE-AST is pretrained on the keyword set's training audio (data/keywords, spoken
by espeak-ng; see scripts/make_keywords.py), fine-tuned with the Speech Commands recipe
(config/finetune/speechcommands.yaml, scaled down by overrides), and ``mae-ast-evaluate``
scores the test split, whose 4 voices no training clip uses. Three runs: full fine-tuning
from the pretrained encoder, a linear probe on it (``model.freeze_encoder=true``) and the
same architecture from random init (the baseline).

Bounds: 10 classes, 40 test clips, chance 10%. A model at chance gets >= 10 of 40 right
with probability 0.005 (binomial), >= 16 with probability 6e-7. Measured over fine-tuning
seeds 1-3 and a second pretraining seed: full fine-tuning 0.82-0.95, linear probe
0.45-0.55, random init 0.75-0.85 (fine-tuning seeds only). So full fine-tuning must
reach 40% (4x chance) and the probe 25% (2.5x chance): far above what chance can
produce, far below what the runs reach. Random init is recorded, not judged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KEYWORDS = ROOT / "data" / "keywords"
NUM_CLASSES = 10

# Tiny frame model (128x2 patches: whole-spectrum frame pairs, the kind SSAST fine-tuned on
# Speech Commands), shared by pretraining and the random-init baseline. On this set 16x16
# patches of the same size reached only ~40% after fine-tuning.
TINY = {"encoder_layers": 2, "encoder_embed_dim": 64, "decoder_embed_dim": 64, "encoder_ffn_embed_dim": 128,
        "encoder_attention_heads": 4, "ast_kernel_size_chan": 128, "ast_kernel_size_time": 2,
        "ast_kernel_stride_chan": 128, "ast_kernel_stride_time": 2}
PRETRAIN_UPDATES = 400
FINETUNE_UPDATES = 300
FINETUNE_LR = 0.003  # a 64-dim encoder wants a larger step than ViT-B's 2.5e-4
PROBE_LR = 0.02  # only LayerNorm + Linear train: a linear probe takes a larger step still


def cli_env() -> dict[str, str]:
    # One intra-op thread: on 2 shared cores, torch's default 2 threads spin against each
    # other and other processes and run ~10x slower on these tiny models.
    return dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore")


def run_cli(*cmd: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          env=cli_env(), cwd=ROOT)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def pretrain(run_dir: Path, updates: int, data: Path = KEYWORDS) -> Path:
    """A tiny frame MAE-AST (random masks) pretrained by fairseq-hydra-train; its checkpoint."""
    run_cli(
        BIN / "fairseq-hydra-train", "--config-dir", ROOT / "config" / "pretrain", "--config-name", "mae_ast",
        f"common.user_dir={ROOT / 'mae_ast'}", f"task.data={data}", f"hydra.run.dir={run_dir}",
        f"checkpoint.save_dir={run_dir / 'checkpoints'}", *(f"model.{k}={v}" for k, v in TINY.items()),
        "model.decoder_layers=1", "task.mask_type=random_mask", "task.min_sample_size=8000",  # 1 s clips
        "distributed_training.distributed_world_size=1", "distributed_training.nprocs_per_node=1",
        "common.cpu=true", "common.fp16=false", "dataset.num_workers=0", "dataset.max_tokens=1600000",
        f"optimization.max_update={updates}", "optimization.lr=[0.001]", "lr_scheduler.warmup_updates=10",
    )
    return run_dir / "checkpoints" / "checkpoint_last.pt"


def finetune(run_dir: Path, pretrained: Path | None, updates: int, *overrides: str, lr: float = FINETUNE_LR,
             data: Path = KEYWORDS) -> Path:
    """The Speech Commands recipe scaled down to a tiny CPU run; the last checkpoint.

    Kept from the recipe: target_length 128, noise + time roll, SpecAugment, Adam betas,
    the step schedule (warmup then x0.85 steps). Scaled down: batch 16, a fixed number of
    updates, warmup 20 and a decay step every 100 updates (the recipe's are in epochs of
    663 updates), SpecAugment masks of 12 instead of 48, no mixup, and cross-entropy
    instead of the recipe's BCE. Why: on 120 clips and 300 updates the recipe's masks and
    mixup held test accuracy at 35%, and BCE sits on its class-prior plateau (loss 0.325)
    for a seed-dependent number of updates (test accuracy 0.20 to 0.72 over seeds 1-3),
    where cross-entropy gave 0.82-0.95. The last checkpoint is used: 20 valid clips pick
    a "best" by noise."""
    init = [f"model.pretrained_checkpoint={pretrained}"] if pretrained else [
        "model.encoder={" + ",".join(f"{k}:{v}" for k, v in TINY.items()) + "}"]
    run_cli(
        BIN / "fairseq-hydra-train", "--config-dir", ROOT / "config" / "finetune", "--config-name",
        "speechcommands", f"common.user_dir={ROOT / 'mae_ast'}", f"task.data={data}", *init,
        f"hydra.run.dir={run_dir}", f"checkpoint.save_dir={run_dir / 'checkpoints'}",
        "common.cpu=true", "common.fp16=false", "common.log_interval=50", "dataset.num_workers=0",
        "dataset.batch_size=16", "dataset.required_batch_size_multiple=1",
        "distributed_training.distributed_world_size=1", "distributed_training.nprocs_per_node=1",
        "optimization.max_epoch=0", f"optimization.max_update={updates}", f"optimization.lr=[{lr}]",
        "optimizer.groups.default.lr_scheduler.warmup_updates=20",
        "optimizer.groups.default.lr_scheduler.lr_deacy_period=100",
        "task.freqm=12", "task.timem=12", "task.mixup=0.0", "criterion.loss=ce",
        *overrides,
    )
    return run_dir / "checkpoints" / "checkpoint_last.pt"


def evaluate(checkpoint: Path, out: Path, split: str = "test", data: Path = KEYWORDS) -> dict:
    run_cli(BIN / "mae-ast-evaluate", checkpoint, data, "--split", split, "--json", out, "--device", "cpu")
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    start = time.monotonic()
    checkpoint = pretrain(tmp_path_factory.mktemp("kw_pretrain"), PRETRAIN_UPDATES)
    print(f"pretraining: {PRETRAIN_UPDATES} updates, {time.monotonic() - start:.0f} s")
    return checkpoint


def test_finetune_beats_chance(pretrained, tmp_path):
    """Full fine-tuning, linear probe and random init; accuracies and wall times printed."""
    chance = 1 / NUM_CLASSES
    results = {}
    runs = [("pretrained", pretrained, FINETUNE_LR, ()),
            ("frozen", pretrained, PROBE_LR, ("model.freeze_encoder=true",)),
            ("random_init", None, FINETUNE_LR, ())]
    for name, init, lr, extra in runs:
        start = time.monotonic()
        checkpoint = finetune(tmp_path / name, init, FINETUNE_UPDATES, *extra, lr=lr)
        metrics = evaluate(checkpoint, tmp_path / f"{name}.json")
        results[name] = (metrics["accuracy"], metrics["n_clips"], time.monotonic() - start)
    for name, (acc, n, wall) in results.items():
        print(f"{name:12s} test accuracy {acc:.3f} on {n} clips (chance {chance:.2f}), {wall:.0f} s")
    assert all(n == 40 for _, n, _ in results.values())
    assert results["pretrained"][0] >= 4 * chance, results
    assert results["frozen"][0] >= 2.5 * chance, results
