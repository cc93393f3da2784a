"""Time full MAE-AST pretraining steps: forward, criterion, backward, optimizer.

    python bench/pretrain_step.py [--device cuda] [--dtypes fp32,fp16,bf16] [--steps 30]
                                  [--clips N] [--out bench/results]

Models: the seed's 12-layer patch (16x16, chunk_mask) and frame (2x128, random_mask)
configs, dropout and layerdrop as in config/pretrain/mae_ast.yaml. The batch is what
fairseq builds from the seed's ``dataset.max_tokens=8388608`` for 10 s clips (computed
below with fairseq's own batch_by_size when fairseq is installed). Beside each model,
an "SSAST-style" reference: the same encoder over ALL tokens (masked ones replaced by the
mask embedding), no decoder, heads on the encoder output.

Timing: CUDA events around each step after warm-up, median of ``--steps``; on CPU a
host clock. FLOPs are counted by hand (``step_flops``): matmuls only, x2 per
multiply-add, backward = 2 x forward. MFU is against the matmul rate measured on the same
device at start-up: bf16 on a GPU, fp32 on a CPU (where bf16 is emulated). Prints a table and writes JSON next to it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from results_io import save_results  # noqa: E402
from mae_ast.criterions.mae_ast_criterion import info_nce  # noqa: E402
from mae_ast.models.mae_ast import MAE_AST, MAE_AST_Config  # noqa: E402

SEED_MAX_TOKENS = 8388608
CLIP_SECONDS = 10.0
FRAMES_10S = 998  # Kaldi fbank frames of 160000 samples (25 ms window, 10 ms shift)

MODELS = {
    "patch": dict(kt=16, kc=16, mask_type="chunk_mask"),
    "frame": dict(kt=2, kc=128, mask_type="random_mask"),
}


def seed_batch_size(manifest_samples: int, max_sample_size: int = 250000) -> int:
    """Clips per batch for 10 s clips: fairseq counts min(manifest length,
    max_sample_size) samples per clip and rounds the batch down to a multiple of 8."""
    size = min(manifest_samples, max_sample_size)
    try:
        import numpy as np
        from fairseq.data import data_utils

        batches = data_utils.batch_by_size(np.arange(200), lambda i: size, max_tokens=SEED_MAX_TOKENS,
                                           required_batch_size_multiple=8)
        return len(batches[0])
    except ImportError:
        return (SEED_MAX_TOKENS // size) // 8 * 8


def build(kind: str) -> MAE_AST:
    spec = MODELS[kind]
    cfg = MAE_AST_Config(
        ast_kernel_size_time=spec["kt"], ast_kernel_size_chan=spec["kc"], ast_kernel_stride_time=spec["kt"],
        ast_kernel_stride_chan=spec["kc"], enc_sine_pos=True, dec_sine_pos=True, dropout_input=0.1,
        encoder_layerdrop=0.05, random_mask_prob=0.75,
    )
    task = SimpleNamespace(feature_type="fbank", feature_dim=128, mask_type=spec["mask_type"], deltas=False)
    return MAE_AST(cfg, task)


def ssast_forward(model: MAE_AST, source: torch.Tensor) -> dict:
    """The same encoder over all tokens, masked ones replaced by the mask embedding."""
    patches = model.patchify(source)
    B, T, _ = patches.shape
    x = model.add_positions(model.post_extract_proj(patches), None, "enc")
    plan = model.forward_mask(B, T, None, x.device)
    x = torch.where(plan.mask.unsqueeze(-1), model.encoder_mask_emb.to(x.dtype), x)
    y, _ = model.encoder(x)
    idx = plan.masked.unsqueeze(-1)
    y_m = torch.gather(y, 1, idx.expand(-1, -1, y.shape[-1]))
    return {"logit_m_list_recon": model.final_proj_reconstruction(y_m),
            "logit_m_list_class": model.final_proj_classification(y_m),
            "target_m_list": torch.gather(patches, 1, idx.expand(-1, -1, patches.shape[-1]))}


def loss_of(out: dict) -> torch.Tensor:
    recon, classes, target = out["logit_m_list_recon"].float(), out["logit_m_list_class"].float(), \
        out["target_m_list"].float()
    nce, _ = info_nce(classes, target)
    return 10.0 * torch.nn.functional.mse_loss(recon, target) + nce


def step_flops(model: MAE_AST, B: int, ssast: bool) -> float:
    """Matmul FLOPs of one training step (forward x 3 for forward + backward)."""
    cfg = model.cfg
    D, F, P = cfg.encoder_embed_dim, cfg.encoder_ffn_embed_dim, cfg.ast_kernel_size_time * cfg.ast_kernel_size_chan
    T = (FRAMES_10S // cfg.ast_kernel_size_time) * model.chan_blocks
    R = max(1, int(0.25 * T))
    M = T - R

    def layers(n_tokens: int, depth: int) -> float:
        linear = n_tokens * (2 * D * 3 * D + 2 * D * D + 2 * 2 * D * F)
        attention = 2 * 2 * n_tokens * n_tokens * D
        return depth * (linear + attention)

    fwd = 2 * T * P * D  # post_extract_proj
    fwd += layers(T if ssast else R, cfg.encoder_layers)
    if not ssast:
        fwd += layers(T, cfg.decoder_layers)
    fwd += 2 * 2 * M * D * P  # reconstruction and classification heads
    fwd += 2 * M * M * P  # InfoNCE scores
    return 3.0 * B * fwd


def peak_dtype(device: torch.device) -> torch.dtype:
    """The MFU reference: bf16 tensor cores on a GPU; fp32 on a CPU, where bf16 matmuls
    are emulated and far slower than fp32 (so a bf16 'peak' would mean nothing)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def measure_matmul_rate(device: torch.device) -> float:
    """Matmul FLOP/s on this device in ``peak_dtype`` (the MFU denominator)."""
    n = 8192 if device.type == "cuda" else 3072
    a = torch.randn(n, n, device=device, dtype=peak_dtype(device))
    b = torch.randn(n, n, device=device, dtype=peak_dtype(device))
    times = []
    for i in range(12):
        t0 = time_start(device)
        a @ b
        dt = time_stop(device, t0)
        if i >= 2:
            times.append(dt)
    return 2 * n**3 / statistics.median(times)


def time_start(device):
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        return (start, end)
    return time.perf_counter()


def time_stop(device, t0) -> float:
    if device.type == "cuda":
        start, end = t0
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    return time.perf_counter() - t0


def run_case(kind: str, dtype: str, ssast: bool, B: int, steps: int, warmup: int, device) -> dict:
    torch.manual_seed(0)
    model = build(kind).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "fp16")
    source = torch.randn(B, FRAMES_10S, 128, device=device) * 3 - 6
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        t0 = time_start(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = ssast_forward(model, source) if ssast else model(source)
            loss = loss_of(out)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        dt = time_stop(device, t0)
        if i >= warmup:
            times.append(dt)
    step = statistics.median(times)
    flops = step_flops(model, B, ssast)
    T = (FRAMES_10S // model.cfg.ast_kernel_size_time) * model.chan_blocks
    return {"model": kind, "variant": "ssast-style" if ssast else "mae-ast", "dtype": dtype, "clips": B,
            "step_s": step, "step_spread_s": max(times) - min(times), "clips_per_s": B / step,
            "tokens_per_s": B * T / step, "tflops": flops / step / 1e12,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
            "loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", default="fp32,fp16,bf16")
    parser.add_argument("--models", default="patch,frame")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--clips", type=int, default=None, help="override the seed's batch size")
    parser.add_argument("--manifest-samples", type=int, default=479232,
                        help="manifest length of a 10 s clip (AudioSet mkv at 48 kHz: 479232; 16 kHz: 160000)")
    parser.add_argument("--no-ssast", action="store_true")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    device = torch.device(args.device)
    B = args.clips or seed_batch_size(args.manifest_samples)
    peak = measure_matmul_rate(device)
    rows = []
    for kind in args.models.split(","):
        for dtype in args.dtypes.split(","):
            for ssast in ([False] if args.no_ssast else [False, True]):
                row = run_case(kind, dtype, ssast, B, args.steps, args.warmup, device)
                row["mfu"] = row["tflops"] * 1e12 / peak
                rows.append(row)
                print(f"  {kind:6} {row['variant']:12} {dtype:5} {row['clips_per_s']:9.1f} clips/s", flush=True)

    env = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "python": platform.python_version(), "clips_per_batch": B,
           "peak_dtype": str(peak_dtype(device)).replace("torch.", ""), "peak_matmul_tflops": peak / 1e12,
           "date": time.strftime("%Y-%m-%d")}
    print(f"\n{env['device']}, torch {env['torch']}, {B} clips x 10 s per step, "
          f"{env['peak_dtype']} matmul peak measured {peak / 1e12:.2f} TFLOP/s (MFU reference)")
    print(f"{'model':7}{'variant':13}{'dtype':6}{'step ms':>9}{'clips/s':>9}{'tokens/s':>11}"
          f"{'TFLOP/s':>9}{'MFU':>7}{'peak GiB':>10}{'vs ssast':>9}")
    for r in rows:
        ref = next((x for x in rows if x["model"] == r["model"] and x["dtype"] == r["dtype"]
                    and x["variant"] == "ssast-style"), None)
        ratio = f"{r['clips_per_s'] / ref['clips_per_s']:.2f}x" if ref and r is not ref else "-"
        mem = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "-"
        print(f"{r['model']:7}{r['variant']:13}{r['dtype']:6}{r['step_s'] * 1e3:9.1f}{r['clips_per_s']:9.1f}"
              f"{r['tokens_per_s']:11.0f}{r['tflops']:9.2f}{r['mfu']:7.1%}{mem:>10}{ratio:>9}")
    path = save_results(args.out, f"pretrain_step_{device.type}", env, rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
