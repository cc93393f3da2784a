"""Two-process data-parallel training on CPU (gloo) with fairseq's own distributed code.

fairseq 0.12's automatic launchers need CUDA (its single-node spawner asserts one GPU
per process; its torchrun path divides by torch.cuda.device_count()). Its explicit path
(distributed_init_method + distributed_no_spawn, one process per rank) does not, so
that is what runs here, as on a CPU cluster.
"""

import logging
import socket
import subprocess
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import BIN, DEMO, ROOT, tiny_model

pytestmark = pytest.mark.slow

TINY = ["model.encoder_layers=1", "model.decoder_layers=1", "model.encoder_embed_dim=64",
        "model.decoder_embed_dim=64", "model.encoder_ffn_embed_dim=128", "model.encoder_attention_heads=4",
        "model.max_token_length=2000", "common.cpu=true", "optimization.max_update=3",
        "dataset.max_tokens=400000", "dataset.num_workers=0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_train_with_gloo_and_stay_in_sync(tmp_path):
    port = free_port()
    procs = []
    for rank in range(2):
        cmd = [str(BIN / "fairseq-hydra-train"), "--config-dir", str(ROOT / "config" / "pretrain"),
               "--config-name", "mae_ast", f"common.user_dir={ROOT / 'mae_ast'}", f"task.data={DEMO}", *TINY,
               "distributed_training.distributed_world_size=2", "distributed_training.distributed_backend=gloo",
               f"distributed_training.distributed_init_method=tcp://127.0.0.1:{port}",
               "distributed_training.distributed_no_spawn=true", f"distributed_training.distributed_rank={rank}",
               f"distributed_training.device_id={rank}", f"hydra.run.dir={tmp_path / f'rank{rank}'}",
               f"checkpoint.save_dir={tmp_path / 'checkpoints'}"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    log = (tmp_path / "rank0" / "hydra_train.log").read_text()
    assert "initialized host" in log and "as rank 0" in log
    assert "parameter checksum spread across 2 ranks = 0\n" in log
    assert (tmp_path / "checkpoints" / "checkpoint_last.pt").exists()


def _replica_check(rank: int, init_file: str, perturb: bool, results) -> None:
    from types import SimpleNamespace

    from mae_ast.tasks.mae_ast_pretraining import MAE_AST_Pretraining_Task

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = tiny_model()
    if perturb and rank == 1:
        with torch.no_grad():
            model.post_extract_proj.bias += 1e-3
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logging.getLogger("mae_ast.tasks.mae_ast_pretraining").addHandler(handler)
    task = MAE_AST_Pretraining_Task(SimpleNamespace(feature_type="fbank", feature_rate=100))
    task.begin_valid_epoch(1, model)
    results.put((rank, records))
    dist.destroy_process_group()


def _run_check(perturb: bool) -> dict:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=_replica_check, args=(r, f"{tmp}/init", perturb, results)) for r in range(2)]
        for p in procs:
            p.start()
        out = dict(results.get(timeout=120) for _ in procs)
        for p in procs:
            p.join(timeout=60)
    return out


def test_replica_check_reports_divergence():
    def spread(out):
        return float(out[0][0].rsplit("= ", 1)[1])

    in_sync, diverged = _run_check(False), _run_check(True)
    assert spread(in_sync) == 0.0
    assert spread(diverged) > 1e-3  # rank 1's bias moved by 1e-3 in 64 entries
