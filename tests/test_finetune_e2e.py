"""Acceptance test of fine-tuning, end to end through the real CLIs, on CPU.

A tiny MAE-AST is pretrained on the keyword set's training audio (data/keywords, spoken
by espeak-ng; see scripts/make_keywords.py), fine-tuned with the Speech Commands recipe
(config/finetune/speechcommands.yaml, scaled down by overrides), and ``mae-ast-evaluate``
scores the test split, whose 4 voices no training clip uses. Runs: full fine-tuning from
the pretrained encoder (seeds 1 and 2), a linear probe on it (``model.freeze_encoder=true``,
MAE's BatchNorm probe head), the same architecture from random init (the baseline), and
scikit-learn's StandardScaler + LogisticRegression on the probe's own pooled features.

Bounds: 10 classes, 40 test clips, chance 10%; a model at chance gets >= 20 of 40 right
with probability 2e-10 (binomial). Measured on this pretraining: full fine-tuning 0.85 /
0.90 (seeds 1 / 2), probe 0.625, scikit-learn 0.675 (C=1), random init 0.825 (with the
pretraining architecture: sinusoidal positions; 0.80 without them). Asserted:
every fine-tuning seed >= 0.75 and above both probes (fine-tuning must beat a linear
read-out of the frozen features), the probe >= 0.5 and at most 0.05 (2 clips) below
scikit-learn's. The probe sits exactly 2 clips below: a change that costs it one more
clip fails here. Random init is recorded, not judged (on 40 clips its gap to the
pretrained encoder is not significant).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

import mae_ast
from conftest import BIN, ROOT, fairseq_train, run_cli
from mae_ast.classifier import load_classifier
from mae_ast.tools.evaluate import open_split

# Pretraining, then four fine-tuning runs two at a time, through the CLIs: ~2.5 minutes on 2 cores.
pytestmark = pytest.mark.slow

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
FINETUNE_SEEDS = (1, 2)
# The linear probe: MAE's protocol (model.head_norm=null -> BatchNorm without affine
# parameters before the Linear layer), no augmentation, so that it sees exactly the
# features the scikit-learn reference sees.
PROBE_LR = 0.03
PROBE_OVERRIDES = ("model.freeze_encoder=true", "task.freqm=0", "task.timem=0", "task.noise=false")
SKLEARN_CS = [10.0 ** e for e in np.arange(-3, 2.5, 0.5)]
# Bounds: see the module docstring.
FINETUNE_MIN = 0.75
PROBE_MIN = 0.5
PROBE_TOLERANCE = 0.05


def pretrain(run_dir: Path, updates: int, data: Path = KEYWORDS) -> Path:
    """A tiny frame MAE-AST (random masks) pretrained by fairseq-hydra-train; its checkpoint."""
    fairseq_train(
        "pretrain/mae_ast", run_dir, f"task.data={data}", *(f"model.{k}={v}" for k, v in TINY.items()),
        "model.decoder_layers=1", "task.mask_type=random_mask", "task.min_sample_size=8000",  # 1 s clips
        "distributed_training.distributed_world_size=1", "distributed_training.nprocs_per_node=1",
        "common.cpu=true", "common.fp16=false", "dataset.num_workers=0", "dataset.max_tokens=1600000",
        f"optimization.max_update={updates}", "optimization.lr=[0.001]", "lr_scheduler.warmup_updates=10",
        check=True,
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
    where cross-entropy gave 0.82-0.95. Layer decay 0.75 (MAE's): the encoder's step size
    is what destabilises fine-tuning; at lr 0.01 without it seed 2 fell to 0.55 (seed 1
    0.75), with it 0.90. The last checkpoint is used: 20 valid clips pick a "best" by noise."""
    init = [f"model.pretrained_checkpoint={pretrained}"] if pretrained else [
        "model.encoder={" + ",".join(f"{k}:{v}" for k, v in TINY.items()) + "}"]
    fairseq_train(
        "finetune/speechcommands", run_dir, f"task.data={data}", *init,
        "common.cpu=true", "common.fp16=false", "common.log_interval=50", "dataset.num_workers=0",
        "dataset.batch_size=16", "dataset.required_batch_size_multiple=1",
        "distributed_training.distributed_world_size=1", "distributed_training.nprocs_per_node=1",
        "optimization.max_epoch=0", f"optimization.max_update={updates}", f"optimization.lr=[{lr}]",
        "optimizer.groups.default.lr_scheduler.warmup_updates=20",
        "optimizer.groups.default.lr_scheduler.lr_deacy_period=100",
        "task.freqm=12", "task.timem=12", "task.mixup=0.0", "criterion.loss=ce", "model.layer_decay=0.75",
        *overrides, check=True,
    )
    return run_dir / "checkpoints" / "checkpoint_last.pt"


def evaluate(checkpoint: Path, out: Path, split: str = "test", data: Path = KEYWORDS) -> dict:
    run_cli(BIN / "mae-ast-evaluate", checkpoint, data, "--split", split, "--json", out, "--device", "cpu", check=True)
    return json.loads(out.read_text())


def pooled_features(probe_checkpoint: Path, pretrained: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The probe classifier's own pooled input (``forward_head(..., pre_logits=True)``, eval clips: start
    crop / padding to 128 frames, no augmentation) and the labels; checked equal to the
    mean over valid tokens of ``mae_ast.load(pretrained).extract_layers`` (the probe's
    encoder is the pretrained one, frozen)."""
    clf = load_classifier(str(probe_checkpoint), device="cpu")
    dataset = open_split(clf, str(KEYWORDS), split)
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    source, pad = batch["net_input"]["source"], batch["net_input"]["padding_mask"]
    with torch.no_grad():
        ours = clf.model.forward_head(clf.model.forward_features(source, pad), pre_logits=True)
        out = mae_ast.load(str(pretrained), device="cpu").extract_layers(source, pad)
    states = out["last_hidden_state"]
    valid = torch.ones_like(states[..., :1]) if out["padding_mask"] is None else (~out["padding_mask"])[..., None]
    reference = (states * valid).sum(1) / valid.sum(1)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
    return ours.numpy(), batch["target"].argmax(-1).numpy()


def sklearn_probe(train, valid, test) -> tuple[float, float]:
    """StandardScaler + LogisticRegression, C chosen on the valid split; (test accuracy, C).

    C is chosen by valid log-loss, not accuracy: on 20 valid clips accuracy ties over
    most of the grid (0.30-0.40 on the first pretraining) and its first maximum, C=0.001,
    scored 0.225 on test, a reference too weak to test anything against."""
    scaler = StandardScaler().fit(train[0])
    fits = [LogisticRegression(C=C, max_iter=5000).fit(scaler.transform(train[0]), train[1]) for C in SKLEARN_CS]
    best = min(fits, key=lambda f: log_loss(valid[1], f.predict_proba(scaler.transform(valid[0])),
                                            labels=list(range(NUM_CLASSES))))
    return float(best.score(scaler.transform(test[0]), test[1])), float(best.C)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    start = time.monotonic()
    checkpoint = pretrain(tmp_path_factory.mktemp("kw_pretrain"), PRETRAIN_UPDATES)
    print(f"pretraining: {PRETRAIN_UPDATES} updates, {time.monotonic() - start:.0f} s")
    return checkpoint


@pytest.fixture(scope="module")
def accuracies(pretrained, tmp_path_factory) -> dict[str, float]:
    """Test accuracy of full fine-tuning (each seed), the linear probe, random init and
    the scikit-learn probe on the linear probe's own features; wall times printed."""
    tmp = tmp_path_factory.mktemp("kw_finetune")
    runs = {f"pretrained_seed{s}": (pretrained, FINETUNE_LR, (f"common.seed={s}",)) for s in FINETUNE_SEEDS}
    runs["probe"] = (pretrained, PROBE_LR, PROBE_OVERRIDES)
    runs["random_init"] = (None, FINETUNE_LR, ())

    def run(name: str) -> tuple[Path, float]:
        init, lr, extra = runs[name]
        start = time.monotonic()
        checkpoint = finetune(tmp / name, init, FINETUNE_UPDATES, *extra, lr=lr)
        metrics = evaluate(checkpoint, tmp / f"{name}.json")
        assert metrics["n_clips"] == 40
        print(f"{name:18s} test accuracy {metrics['accuracy']:.3f}, {time.monotonic() - start:.0f} s")
        return checkpoint, metrics["accuracy"]

    # Two runs at a time: each is its own single-threaded process with its own seed, so
    # the numbers do not depend on what runs beside it, and the second core is used.
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(runs, pool.map(run, runs)))
    checkpoints = {name: c for name, (c, _) in done.items()}
    results = {name: acc for name, (_, acc) in done.items()}
    splits = [pooled_features(checkpoints["probe"], pretrained, s) for s in ("train", "valid", "test")]
    results["sklearn"], c = sklearn_probe(*splits)
    print(f"{'sklearn':18s} test accuracy {results['sklearn']:.3f} (C={c:g}; chance {1 / NUM_CLASSES:.2f})")
    return results


def test_finetune_and_probe_beat_chance_by_far(accuracies):
    fine_tuned = [accuracies[f"pretrained_seed{s}"] for s in FINETUNE_SEEDS]
    assert min(fine_tuned) >= FINETUNE_MIN, accuracies
    assert accuracies["probe"] >= PROBE_MIN, accuracies


def test_probe_reaches_sklearn_on_the_same_features(accuracies):
    """One-sided: a probe that under-reports is the failure; beating the reference is not."""
    clips = 40  # compared in clips, so that 0.05 = 2 clips exactly, without rounding error
    assert round(accuracies["probe"] * clips) >= round((accuracies["sklearn"] - PROBE_TOLERANCE) * clips), accuracies


def test_finetune_beats_both_probes_on_every_seed(accuracies):
    best_probe = max(accuracies["probe"], accuracies["sklearn"])
    assert all(accuracies[f"pretrained_seed{s}"] > best_probe for s in FINETUNE_SEEDS), accuracies
