"""Time full MAE-AST pretraining steps (forward, criterion, backward, clip, Adam) for
ours, the ORIGINAL code and an SSAST-style reference, in one process on one batch.

    python bench/pretrain_step.py [--device cuda] [--dtypes fp32,fp16,bf16] [--steps 30]
        [--variants original,mae-ast,ssast-style] [--models patch,frame] [--clips N]
        [--precision-mode autocast|half-model] [--compile] [--fused-adam] [--profile]
        [--interleave] [--encoder-layerdrop P] [--tiny] [--tag NAME] [--out bench/results]

Variants:
  original     s3prl 0.4.18's vendored copy of the original MAE-AST code
               (``s3prl.upstream.mae_ast.mae_ast``), loaded with our weights (strict),
               called as fairseq calls it: ``(source, padding_mask=all False, mask=True)``.
               Its masking is per-clip Python on ``random``. Its output has our keys, so
               the criterion is the same ``loss_of``.
  mae-ast      ours.
  ssast-style  our encoder over ALL tokens (masked ones replaced by the mask
               embedding), no decoder, heads on the encoder output.
  mae-ast-graph  (not by default) ours with the forward compiled as one graph
               (``torch.compile(fullgraph=True)``); backward, clipping, Adam eager.

Precision. fp16/bf16 for ``original`` always run as fairseq's ``common.fp16`` /
``common.bf16`` do (the config's ``fp16: true``): the model itself cast to half, fp32
master weights in the optimizer, loss scale 128 for fp16 ("half-model"). The original
cannot run under autocast: its masking writes the fp32 mask embedding into half features
in place (index_put dtype mismatch). Ours runs under ``torch.autocast`` by default, or
the same half-model way with ``--precision-mode half-model`` (then the ratio compares
like with like).

Models: the seed's 12-layer patch (16x16, chunk_mask) and frame (2x128, random_mask)
configs, dropout as in config/pretrain/mae_ast.yaml; encoder layerdrop off unless
``--encoder-layerdrop 0.05`` (the seed's): with it each variant drops its own random
layers, so two paired steps can differ by whole blocks of work. The batch is what
fairseq builds from the seed's ``dataset.max_tokens=8388608`` for 10 s clips (fairseq's
own batch_by_size). ``--tiny`` (2 layers, 256-d, 2 s clips) only exercises the code paths on a CPU.

Levers (CUDA): ``--compile`` (our ``compile_blocks``, for mae-ast and ssast-style),
``--fused-adam`` (``torch.optim.Adam(fused=True)``; default is torch's foreach Adam),
for every variant since the optimizer is not model code.

Timing: CUDA events around each step after warm-up, median of ``--steps``; on a CPU a
host clock. ``--interleave`` runs one step of each variant in turn (for shared, noisy
machines: load bursts hit all variants alike), and the ``vs`` columns are then the
median of the per-step paired ratios with their interquartile range; a ratio whose
range contains 1 is printed as ``noise``, never as a number (``paired.py``). FLOPs are counted by hand
(``step_flops``): matmuls only, x2 per multiply-add, backward = 2 x forward; the
original does the same useful FLOPs as ours. MFU is against the matmul rate measured on
the same device at start-up: bf16 on a GPU, fp32 on a CPU (where bf16 is emulated).
``--profile`` adds a torch.profiler run of ours (bf16 on CUDA): top 15 kernels by self
device time (CPU: ops by self CPU time). Every run also checks which scaled-dot-product-
attention kernel our attention uses. Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import statistics
import time

import torch
from paired import describe, paired_ratio, quartiles
from results_io import save_results
from step_models import build, build_original, clip_frames, seed_batch_size, ssast_forward, step_flops
from step_timing import (
    AMP, autocast_step, device_name, free, half_model_step, measure_matmul_rate, peak_dtype, sync, time_start,
    time_steps, time_stop,
)

from mae_ast.models.mae_ast import MAE_AST

VARIANTS = ("original", "mae-ast", "ssast-style")
# Not in the default list (compiling costs minutes): ours with forward + mask + heads
# compiled as ONE graph (torch.compile(fullgraph=True); tests/test_compile.py proves it
# captures without a break).
EXTRA_VARIANTS = ("mae-ast-graph",)


def make_case(kind: str, variant: str, dtype: str, args, device, B: int):
    """(our model for FLOP counting, step function) of one variant. All variants start
    from the same weights (seed 0) and see the same batch."""
    torch.manual_seed(0)
    random.seed(0)  # the original's masking draws from Python's random
    ours = build(kind, args.tiny, compile_blocks=args.compile and variant != "original",
                 layerdrop=args.encoder_layerdrop)
    if variant == "original":
        model = build_original(ours).to(device).train()
        pad = torch.zeros(B, args.frames, dtype=torch.bool, device=device)  # it indexes this; all valid

        def forward(s):
            return model(s, padding_mask=pad, mask=True)
    else:
        model = ours.to(device).train()

        def forward(s):
            return ssast_forward(model, s) if variant == "ssast-style" else model(s)

        if variant == "mae-ast-graph":
            forward = torch.compile(forward, fullgraph=True)
    half_model = dtype != "fp32" and (variant == "original" or args.precision_mode == "half-model")
    maker = half_model_step if half_model else autocast_step
    precision = "fp32" if dtype == "fp32" else ("half-model" if half_model else "autocast")
    return ours, maker(model, forward, dtype, device, args.fused_adam), precision


def case_row(ours: MAE_AST, kind: str, variant: str, dtype: str, precision: str, B: int, times: list,
             loss: float, args, device, peak_mem: float | None) -> dict:
    median = statistics.median(times)
    flops = step_flops(ours, B, variant == "ssast-style", args.frames)
    T = (args.frames // ours.cfg.ast_kernel_size_time) * ours.chan_blocks
    return {"model": kind, "variant": variant, "dtype": dtype, "precision": precision,
            "compile": args.compile and variant != "original", "fused_adam": args.fused_adam and device.type == "cuda",
            "clips": B, "step_s": median, "step_spread_s": max(times) - min(times), "clips_per_s": B / median,
            "times_s": times,
            "tokens_per_s": B * T / median, "tflops": flops / median / 1e12, "peak_mem_gib": peak_mem,
            "loss": loss, "interleaved": bool(getattr(args, "interleave", False))}


def run_case(kind: str, variant: str, dtype: str, B: int, args, device) -> dict:
    """One variant alone: its peak memory is its own."""
    ours, step, precision = make_case(kind, variant, dtype, args, device, B)
    source = torch.randn(B, args.frames, 128, device=device) * 3 - 6
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, loss = time_steps(step, source, args.steps, args.warmup, device)
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    row = case_row(ours, kind, variant, dtype, precision, B, times, loss, args, device, peak_mem)
    del ours, step
    free(device)
    return row


def run_interleaved(kind: str, variants: list[str], dtype: str, B: int, args, device) -> list[dict]:
    """All variants built first, then one step of each in turn (order reversed every
    other step): on a shared machine a burst of load hits every variant alike, so the
    ratios hold better than the rates.
    Peak memory is not reported (the other variants' weights are resident)."""
    cases = [(v, *make_case(kind, v, dtype, args, device, B)) for v in variants]
    source = torch.randn(B, args.frames, 128, device=device) * 3 - 6
    times = {v: [] for v in variants}
    losses = {}
    for i in range(args.warmup + args.steps):
        # Alternate the order, so that no variant always runs right after the same one.
        for v, _, step, _ in (cases if i % 2 == 0 else cases[::-1]):
            t0 = time_start(device)
            losses[v] = float(step(source).detach())
            dt = time_stop(device, t0)
            if i >= args.warmup:
                times[v].append(dt)
    rows = [case_row(ours, kind, v, dtype, precision, B, times[v], losses[v], args, device, None)
            for v, ours, _, precision in cases]
    del cases
    free(device)
    return rows


SDPA_OPS = {  # aten op -> backend it means
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cuDNN",
    "aten::_scaled_dot_product_attention_math": "math (unfused)",
}


def attention_ops(model: MAE_AST, device, dtype: str, train: bool) -> list[str]:
    """aten attention ops one of our encoder blocks runs: forward+backward in train mode
    (attention dropout 0.1), forward in eval mode."""
    block = model.encoder.layers[0].train(train)
    x = torch.randn(2, 124, model.cfg.encoder_embed_dim, device=device, requires_grad=train)
    amp = AMP[dtype]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            y = block(x)
        if train:
            y.float().sum().backward()
    return sorted({e.name for e in prof.events() if "attention" in e.name and e.name.startswith("aten::")})


def sdpa_backends(device, dtype: str, heads: int, head_dim: int) -> dict:
    """CUDA: does each fused backend accept our attention (shape, dtype, dropout 0.1)
    when it is the only one allowed? An error here means SDPA would fall back."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(2, heads, 124, head_dim, device=device, dtype=AMP[dtype] or torch.float32)
    result = {}
    names = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION")  # cuDNN: torch >= 2.5
    for backend in (getattr(SDPBackend, n) for n in names if hasattr(SDPBackend, n)):
        try:
            with sdpa_kernel([backend]):
                torch.nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=0.1)
            sync(device)
            result[backend.name] = "ok"
        except Exception as e:  # the point is to report, not to stop the benchmark
            result[backend.name] = f"raised {type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return result


def sdpa_check(args, device) -> dict:
    """Which attention kernel our blocks get, training and inference."""
    dtype = "bf16" if device.type == "cuda" else "fp32"
    model = build("patch", args.tiny).to(device)
    check = {"dtype": dtype}
    for mode in ("train", "eval"):
        ops = attention_ops(model, device, dtype, train=mode == "train")
        check[mode] = {"aten_ops": ops, "sdpa_used": "aten::scaled_dot_product_attention" in ops,
                       "backend": ", ".join(SDPA_OPS[o] for o in ops if o in SDPA_OPS) or "none"}
        print(f"SDPA {mode} ({dtype}): {check[mode]['backend']}; aten ops {ops}")
    if device.type == "cuda":
        cfg = model.cfg
        check["restricted"] = sdpa_backends(device, dtype, cfg.encoder_attention_heads,
                                            cfg.encoder_embed_dim // cfg.encoder_attention_heads)
        for name, outcome in check["restricted"].items():
            print(f"  sdpa_kernel([{name}]) only: {outcome}")
    del model
    return check


def profile_ours(kind: str, B: int, args, device, steps: int = 3) -> dict:
    """torch.profiler over a few steps of ours (bf16 on CUDA): top 15 kernels by self
    device time (CUDA), or ops by self CPU time (CPU)."""
    dtype = "bf16" if device.type == "cuda" else "fp32"
    ours, step, precision = make_case(kind, "mae-ast", dtype, args, device, B)
    source = torch.randn(B, args.frames, 128, device=device) * 3 - 6
    for _ in range(2):  # allocator and (with --compile) compilation out of the profile
        step(source)
    sync(device)
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            step(source)
        sync(device)
    top = top_events(prof, device, steps)
    print(f"\nprofile: {kind} mae-ast {dtype} ({precision}), {B} clips, {steps} steps; "
          f"top {len(top)} by self {'device' if device.type == 'cuda' else 'CPU'} time")
    print(f"{'self ms/step':>13}{'share':>8}{'calls':>7}  name")
    for r in top:
        print(f"{r['self_ms_per_step']:13.2f}{r['share']:8.1%}{r['calls']:7d}  {r['name'][:100]}")
    del ours, step
    free(device)
    return {"model": kind, "dtype": dtype, "precision": precision, "clips": B, "steps": steps, "top": top}


def top_events(prof, device, steps: int, n: int = 15) -> list[dict]:
    """Kernels (CUDA device events) or CPU ops, by self time, per step."""
    events = prof.key_averages()
    if device.type == "cuda":
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        key = "self_device_time_total"
    else:
        kernels, key = list(events), "self_cpu_time_total"
    total = sum(getattr(e, key) for e in kernels) or 1.0
    kernels.sort(key=lambda e: getattr(e, key), reverse=True)
    return [{"name": e.key, "calls": e.count, "self_ms_per_step": getattr(e, key) / 1e3 / steps,
             "share": getattr(e, key) / total} for e in kernels[:n]]


def ratio(rows: list[dict], r: dict, variant: str) -> str:
    """How much faster ``r`` runs than ``variant`` (same model and dtype). Interleaved
    runs: the median of the per-step paired ratios with its IQR; otherwise the ratio of
    medians, refused when the two variants' step-time IQRs overlap. Either way no ratio
    is printed when the spread says it is noise (see paired.py)."""
    ref = next((x for x in rows if x["model"] == r["model"] and x["dtype"] == r["dtype"]
                and x["variant"] == variant), None)
    if not ref or ref is r:
        return "-"
    if r["interleaved"] and ref["interleaved"]:
        return describe(paired_ratio(ref["times_s"], r["times_s"]))
    (a1, _, a3), (b1, _, b3) = quartiles(ref["times_s"]), quartiles(r["times_s"])
    if a1 <= b3 and b1 <= a3:
        return "noise"
    return f"{r['clips_per_s'] / ref['clips_per_s']:.2f}x"


def print_table(rows: list[dict], env: dict) -> None:
    print(f"\n{env['device']}, torch {env['torch']}, {env['clips_per_batch']} clips x {env['clip_frames']} frames "
          "per step, "
          f"{env['peak_dtype']} matmul peak measured {env['peak_matmul_tflops']:.2f} TFLOP/s (MFU reference)")
    print(f"{'model':7}{'variant':13}{'dtype':6}{'precision':11}{'step ms':>9}{'clips/s':>9}{'TFLOP/s':>9}"
          f"{'MFU':>7}{'peak GiB':>10}{'vs orig (IQR)':>22}{'vs ssast (IQR)':>22}")
    for r in rows:
        mem = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "-"
        print(f"{r['model']:7}{r['variant']:13}{r['dtype']:6}{r['precision']:11}{r['step_s'] * 1e3:9.1f}"
              f"{r['clips_per_s']:9.2f}{r['tflops']:9.2f}{r['mfu']:7.1%}{mem:>10}"
              f"{ratio(rows, r, 'original'):>22}{ratio(rows, r, 'ssast-style'):>22}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtypes", default="fp32,fp16,bf16")
    p.add_argument("--models", default="patch,frame")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--clips", type=int, default=None, help="override the seed's batch size")
    p.add_argument("--manifest-samples", type=int, default=479232,
                   help="manifest length of a 10 s clip (AudioSet mkv at 48 kHz: 479232; 16 kHz: 160000)")
    p.add_argument("--precision-mode", choices=("autocast", "half-model"), default="autocast",
                   help="ours and ssast-style under fp16/bf16 (the original is always half-model)")
    p.add_argument("--compile", action="store_true", help="torch.compile our blocks (compile_blocks)")
    p.add_argument("--fused-adam", action="store_true", help="Adam(fused=True) on CUDA")
    p.add_argument("--profile", action="store_true", help="also profile a few steps of ours")
    p.add_argument("--profile-only", action="store_true", help="skip the timing table")
    p.add_argument("--tiny", action="store_true", help="2-layer 256-d models, 2 s clips: code paths only")
    p.add_argument("--interleave", action="store_true",
                   help="one step of each variant in turn (shared machines; no peak memory)")
    p.add_argument("--encoder-layerdrop", type=float, default=0.0,
                   help="the models' encoder_layerdrop (seed: 0.05). Off by default: with it, each "
                        "variant drops its own random layers, so paired steps differ in work by "
                        "whole layers (one of 14 blocks is ~7%% of a step)")
    p.add_argument("--tag", default="", help="suffix of the JSON file name")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    args.frames = clip_frames(args.tiny)
    unknown = set(args.variants.split(",")) - set(VARIANTS + EXTRA_VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS + EXTRA_VARIANTS}")
    return args


def main() -> None:
    args = parse_args()
    logging.getLogger().setLevel(logging.INFO)  # importing fairseq left it at DEBUG (compile's lock chatter)
    device = torch.device(args.device)
    B = args.clips or seed_batch_size(args.manifest_samples)
    peak = measure_matmul_rate(device, args.tiny)
    env = {"device": device_name(device), "torch": torch.__version__, "python": platform.python_version(),
           "cpu_threads": torch.get_num_threads(), "clips_per_batch": B, "clip_frames": args.frames, "tiny": args.tiny,
           "peak_dtype": str(peak_dtype(device)).replace("torch.", ""), "peak_matmul_tflops": peak / 1e12,
           "precision_mode": args.precision_mode, "compile": args.compile, "fused_adam": args.fused_adam,
           "interleave": args.interleave, "encoder_layerdrop": args.encoder_layerdrop,
           "load_average": os.getloadavg(),
           "date": time.strftime("%Y-%m-%d"), "sdpa": sdpa_check(args, device)}
    rows = []
    if not args.profile_only:
        for kind in args.models.split(","):
            for dtype in args.dtypes.split(","):
                variants = args.variants.split(",")
                done = run_interleaved(kind, variants, dtype, B, args, device) if args.interleave else \
                    [run_case(kind, v, dtype, B, args, device) for v in variants]
                for row in done:
                    row["mfu"] = row["tflops"] * 1e12 / peak
                    print(f"  {kind:6} {row['variant']:12} {dtype:5} {row['precision']:10} "
                          f"{row['clips_per_s']:9.2f} clips/s", flush=True)
                rows += done
        print_table(rows, env)
    if args.profile or args.profile_only:
        env["profile"] = profile_ours(args.models.split(",")[0], B, args, device)
    name = f"pretrain_step_{device.type}" + (f"_{args.tag}" if args.tag else "")
    print(f"wrote {save_results(args.out, name, env, rows)}")


if __name__ == "__main__":
    main()
