"""Time full fine-tuning steps (every token through the encoder, mean pool, LayerNorm +
Linear head, loss, backward, Adam) beside the pretraining step of the same model.

    python bench/finetune_step.py [--device cuda] [--dtypes fp32,bf16] [--steps 20]
        [--tasks audioset,esc50,speechcommands] [--models patch,frame] [--clips N]
        [--pretrain-clips N] [--compile] [--fused-adam] [--tiny] [--tag NAME] [--out bench/results]

The model is the project's ``mae_ast_classifier`` (``MAE_AST_Classifier`` over a
decoder-free ``MAE_AST`` backbone), built from the same 12-layer patch / frame configs as
``pretrain_step.py``; training mode, so its SpecAugment (and noise + time roll where the
recipe has them) run inside the step as they do in training.

Per task, the input length, batch size, augmentation and loss of SSAST's fine-tuning
recipes (src/finetune/*/run_*.sh): AudioSet 1024 frames, 12 clips, 527 classes, BCE;
ESC-50 512 frames, 48 clips, 50 classes, CE; Speech Commands v2 128 frames, 128 clips,
35 classes, BCE. Unlike SSAST's recipes (patch stride 10, overlapping), the tokens are
MAE-AST's non-overlapping patches / frames, as the pretrained models were trained.
Optimizer: Adam as config/finetune/base.yaml (betas 0.95/0.999, eps 1e-8, wd 5e-7, no
clipping). Precision: fp32 or autocast (GradScaler for fp16).

Timing, FLOPs (hand count, matmuls only, backward = 2 x forward) and MFU follow
``pretrain_step.py``; the pretraining rows are its ``mae-ast`` variant at
``--pretrain-clips`` (default: the seed's batch).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from pretrain_step import run_case
from results_io import save_results
from step_models import build, clip_frames, layer_flops, seed_batch_size
from step_timing import AMP, device_name, free, make_adam, measure_matmul_rate, peak_dtype, time_steps

from mae_ast.models.builders import ENCODER_FIELDS, strip_pretraining
from mae_ast.models.classifier_config import MAE_AST_Classifier_Config
from mae_ast.models.mae_ast_classifier import MAE_AST_Classifier

# SSAST fine-tuning recipes: src/finetune/{audioset/run_as.sh, esc50/run_esc_patch.sh,
# speechcommands_v2_35/run_sc.sh}
TASKS = {
    "audioset": dict(frames=1024, clips=12, classes=527, loss="bce", freqm=48, timem=192, noise=False),
    "esc50": dict(frames=512, clips=48, classes=50, loss="ce", freqm=24, timem=96, noise=True),
    "speechcommands": dict(frames=128, clips=128, classes=35, loss="bce", freqm=48, timem=48, noise=True),
}
ADAM = dict(lr=1e-4, betas=(0.95, 0.999), eps=1e-8, weight_decay=5e-7)  # config/finetune/base.yaml


def build_classifier(kind: str, task: dict, tiny: bool, compile_blocks: bool) -> MAE_AST_Classifier:
    """The pretraining config's encoder, decoder and pretraining heads stripped, with the
    recipe's augmentation."""
    backbone = strip_pretraining(build(kind, tiny, compile_blocks=compile_blocks))
    encoder = {k: getattr(backbone.cfg, k) for k in ENCODER_FIELDS}
    augment = {k: task[k] for k in ("freqm", "timem", "noise")}
    return MAE_AST_Classifier(MAE_AST_Classifier_Config(), backbone, encoder, task["classes"], augment)


def finetune_flops(model: MAE_AST_Classifier, B: int, frames: int) -> float:
    """Matmul FLOPs of one fine-tuning step (forward x 3)."""
    cfg = model.backbone.cfg
    D, P = cfg.encoder_embed_dim, cfg.ast_kernel_size_time * cfg.ast_kernel_size_chan
    T = (frames // cfg.ast_kernel_size_time) * model.backbone.chan_blocks
    fwd = 2 * T * P * D + layer_flops(T, cfg.encoder_layers, D, cfg.encoder_ffn_embed_dim)
    fwd += 2 * D * model.head.out_features
    return 3.0 * B * fwd


def loss_fn(kind: str) -> Callable:
    if kind == "ce":
        return lambda logits, y: F.cross_entropy(logits.float(), y)
    return lambda logits, y: F.binary_cross_entropy_with_logits(logits.float(), y)


def targets(task: dict, B: int, device) -> torch.Tensor:
    if task["loss"] == "ce":
        return torch.randint(task["classes"], (B,), device=device)
    return (torch.rand(B, task["classes"], device=device) < 0.02).float()  # a few positives per clip


def finetune_step(model, task: dict, dtype: str, device, fused: bool) -> Callable:
    opt = make_adam(model.parameters(), device, fused, **ADAM)
    amp, loss_of = AMP[dtype], loss_fn(task["loss"])
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "fp16")
    y = None

    def step(source: torch.Tensor) -> torch.Tensor:
        nonlocal y
        if y is None:
            y = targets(task, len(source), device)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = loss_of(model(source), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def run_finetune(name: str, kind: str, dtype: str, args, device) -> dict:
    task = TASKS[name]
    B = args.clips or task["clips"]
    torch.manual_seed(0)
    model = build_classifier(kind, task, args.tiny, args.compile).to(device).train()
    step = finetune_step(model, task, dtype, device, args.fused_adam)
    source = torch.randn(B, task["frames"], 128, device=device) * 3 - 6
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, loss = time_steps(step, source, args.steps, args.warmup, device)
    median = statistics.median(times)
    tokens = model.backbone.grid.patchify(source[:1]).shape[1]
    row = {"step": f"finetune {name}", "model": kind, "dtype": dtype, "frames": task["frames"], "tokens": tokens,
           "clips": B, "step_s": median, "step_spread_s": max(times) - min(times), "clips_per_s": B / median,
           "tflops": finetune_flops(model, B, task["frames"]) / median / 1e12,
           "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
           "loss": loss}
    del model, step
    free(device)
    return row


def run_pretrain(kind: str, dtype: str, B: int, args, device) -> dict:
    """pretrain_step.py's mae-ast row (autocast, same levers) for comparison."""
    ns = argparse.Namespace(tiny=args.tiny, compile=args.compile, fused_adam=args.fused_adam,
                            precision_mode="autocast", steps=args.steps, warmup=args.warmup,
                            encoder_layerdrop=0.0, frames=clip_frames(args.tiny))
    row = run_case(kind, "mae-ast", dtype, B, ns, device)
    return {"step": "pretrain (10 s, 75% masked)", "model": kind, "dtype": dtype, "frames": ns.frames,
            "tokens": None, **{k: row[k] for k in ("clips", "step_s", "step_spread_s", "clips_per_s", "tflops",
                                                   "peak_mem_gib", "loss")}}


def print_table(rows: list[dict], env: dict) -> None:
    print(f"\n{env['device']}, torch {env['torch']}, {env['peak_dtype']} matmul peak measured "
          f"{env['peak_matmul_tflops']:.2f} TFLOP/s (MFU reference)")
    print(f"{'step':30}{'model':7}{'dtype':6}{'frames':>7}{'clips':>6}{'step ms':>10}{'clips/s':>9}"
          f"{'TFLOP/s':>9}{'MFU':>7}{'peak GiB':>10}")
    for r in rows:
        mem = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "-"
        print(f"{r['step']:30}{r['model']:7}{r['dtype']:6}{r['frames']:>7}{r['clips']:>6}{r['step_s'] * 1e3:10.1f}"
              f"{r['clips_per_s']:9.2f}{r['tflops']:9.2f}{r['mfu']:7.1%}{mem:>10}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--models", default="patch,frame")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--clips", type=int, default=None, help="override every recipe's batch size")
    p.add_argument("--pretrain-clips", type=int, default=None, help="pretraining rows' batch (default: seed's)")
    p.add_argument("--no-pretrain", action="store_true", help="skip the pretraining rows")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder blocks")
    p.add_argument("--fused-adam", action="store_true", help="Adam(fused=True) on CUDA")
    p.add_argument("--tiny", action="store_true", help="2-layer 256-d models: code paths only")
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    unknown = set(args.tasks.split(",")) - set(TASKS)
    if unknown:
        p.error(f"unknown tasks {sorted(unknown)}; choose from {list(TASKS)}")
    return args


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    peak = measure_matmul_rate(device, args.tiny)
    rows = []
    for kind in args.models.split(","):
        for dtype in args.dtypes.split(","):
            if not args.no_pretrain:
                rows.append(run_pretrain(kind, dtype, args.pretrain_clips or seed_batch_size(479232), args, device))
            for name in args.tasks.split(","):
                rows.append(run_finetune(name, kind, dtype, args, device))
            for r in rows:
                r.setdefault("mfu", r["tflops"] * 1e12 / peak)
            print("\n".join(f"  {r['step']:30} {kind:6} {dtype:5} {r['clips_per_s']:9.2f} clips/s"
                            for r in rows if r["model"] == kind and r["dtype"] == dtype), flush=True)
    env = {"device": device_name(device), "torch": torch.__version__, "python": platform.python_version(),
           "cpu_threads": torch.get_num_threads(), "tiny": args.tiny, "compile": args.compile,
           "fused_adam": args.fused_adam, "peak_dtype": str(peak_dtype(device)).replace("torch.", ""),
           "peak_matmul_tflops": peak / 1e12, "date": time.strftime("%Y-%m-%d")}
    print_table(rows, env)
    name = f"finetune_step_{device.type}" + (f"_{args.tag}" if args.tag else "")
    print(f"wrote {save_results(args.out, name, env, rows)}")


if __name__ == "__main__":
    main()
