"""Shared fixtures: tiny configs, the demo data, torchaudio's reference code, and a
checkpoint written by a real fairseq-hydra-train run."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import mae_ast  # noqa: F401  (registers task/model/criterion with fairseq)
from mae_ast.models.builders import task_namespace
from mae_ast.models.mae_ast import MAE_AST, MAE_AST_Config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
REF_DIR = ROOT / ".cache" / "torchaudio_ref"
BIN = Path(sys.executable).parent


def task_cfg(mask_type="random_mask", feature_dim=128, deltas=False, **kw):
    return task_namespace(feature_dim=feature_dim, mask_type=mask_type, deltas=deltas, **kw)


def tiny_model(mask_type="random_mask", kt=16, kc=16, dim=64, layers=2, st=None, sc=None, task=None,
               **overrides) -> MAE_AST:
    cfg = MAE_AST_Config(
        ast_kernel_size_time=kt, ast_kernel_size_chan=kc, ast_kernel_stride_time=st or kt,
        ast_kernel_stride_chan=sc or kc, encoder_layers=layers, decoder_layers=1, encoder_embed_dim=dim,
        decoder_embed_dim=dim, encoder_ffn_embed_dim=2 * dim, encoder_attention_heads=4,
        enc_sine_pos=True, dec_sine_pos=True, max_token_length=2000, **overrides,
    )
    return MAE_AST(cfg, task or task_cfg(mask_type))


def _load_module(name: str, path: Path, stub_torchaudio: bool):
    stubbed = stub_torchaudio and "torchaudio" not in sys.modules
    if stubbed:  # kaldi.py only imports it; the module keeps its reference to the stub
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if stubbed:  # a spec-less stub left behind breaks later find_spec("torchaudio") (transformers)
            del sys.modules["torchaudio"]
    return module


@pytest.fixture(scope="session")
def kaldi_ref():
    """torchaudio.compliance.kaldi: the installed one, else the module unpacked from
    torchaudio's wheel by scripts/fetch_torchaudio_reference.sh."""
    try:
        import torchaudio.compliance.kaldi as kaldi

        return kaldi
    except Exception:
        pass
    path = REF_DIR / "kaldi.py"
    if not path.exists():
        pytest.skip("no torchaudio and no .cache/torchaudio_ref (run scripts/fetch_torchaudio_reference.sh)")
    return _load_module("kaldi_ref", path, stub_torchaudio=True)


def hydra_train(run_dir: Path, *overrides: str, data: Path = DEMO, timeout: int = 600):
    """Run fairseq-hydra-train with the repo's config; returns the CompletedProcess."""
    cmd = [
        str(BIN / "fairseq-hydra-train"), "--config-dir", str(ROOT / "config" / "pretrain"),
        "--config-name", "mae_ast", f"common.user_dir={ROOT / 'mae_ast'}", f"task.data={data}",
        f"hydra.run.dir={run_dir}", f"checkpoint.save_dir={run_dir / 'checkpoints'}",
        *overrides,
    ]
    env = dict(os.environ, HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _small_run(run: Path, kt: int, kc: int, mask_type: str) -> Path:
    proc = hydra_train(
        run, "model.encoder_layers=2", "model.decoder_layers=1", f"task.mask_type={mask_type}",
        f"model.ast_kernel_size_chan={kc}", f"model.ast_kernel_size_time={kt}",
        f"model.ast_kernel_stride_chan={kc}", f"model.ast_kernel_stride_time={kt}",
        "distributed_training.distributed_world_size=1", "distributed_training.nprocs_per_node=1",
        "common.cpu=true", "dataset.num_workers=0", "optimization.max_update=3", "dataset.max_tokens=1000000",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run / "checkpoints" / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def frame_checkpoint(tmp_path_factory) -> Path:
    """A small frame model (2x128, random_mask) trained for 3 updates by the real CLI."""
    return _small_run(tmp_path_factory.mktemp("frame_run"), 2, 128, "random_mask")


@pytest.fixture(scope="session")
def patch_checkpoint(tmp_path_factory) -> Path:
    """A small patch model (16x16, chunk_mask) trained for 3 updates by the real CLI."""
    return _small_run(tmp_path_factory.mktemp("patch_run"), 16, 16, "chunk_mask")


def logged(run_dir: Path, tag: str) -> list[dict]:
    """The JSON records fairseq logged under ``tag`` (train_inner, train, valid)."""
    rows = []
    for line in (run_dir / "hydra_train.log").read_text().splitlines():
        m = re.search(rf"\]\[{tag}\]\[INFO\] - (\{{.*\}})$", line)
        if m:
            rows.append(json.loads(m.group(1)))
    return rows


def make_batch(B=2, frames=200, bins=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, frames, bins, generator=g) * 3 - 6


@pytest.fixture(scope="session")
def finetuned_checkpoint(tmp_path_factory, patch_checkpoint) -> Path:
    """A classifier fine-tuned 2 updates from ``patch_checkpoint`` on the demo clips
    (speech / environment / third, single-label) by the real CLI: real, not accurate."""
    from test_finetune import finetune, write_data

    run = tmp_path_factory.mktemp("finetuned")
    finetune(run, write_data(run / "data"), patch_checkpoint, "optimization.max_update=2")
    return run / "ck" / "checkpoint_last.pt"
