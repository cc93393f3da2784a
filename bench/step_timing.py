"""The pretraining-step benchmark's clocks, optimizers and precision modes: device timers,
the measured matmul rate (for MFU), the seed's Adam, autocast and fairseq-style half-model
steps, and timing a step over warm-up and measured repetitions."""

from __future__ import annotations

import gc
import platform
import statistics
import time
from collections.abc import Callable

import torch
from step_models import loss_of

CLIP_NORM = 10.0  # config/pretrain/mae_ast.yaml optimization.clip_norm
FP16_LOSS_SCALE = 128.0  # fairseq's common.fp16_init_scale
AMP = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def peak_dtype(device: torch.device) -> torch.dtype:
    """The MFU reference: bf16 tensor cores on a GPU; fp32 on a CPU, where bf16 matmuls
    are emulated and far slower than fp32 (so a bf16 'peak' would mean nothing)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def measure_matmul_rate(device: torch.device, tiny: bool = False) -> float:
    """Matmul FLOP/s on this device in ``peak_dtype`` (the MFU denominator); ``tiny``
    (toy runs, nothing reported): a 1024 product, seconds less on a loaded CPU."""
    n = 1024 if tiny else 8192 if device.type == "cuda" else 3072
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"


SEED_ADAM = dict(lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)  # config/pretrain/mae_ast.yaml


def make_adam(params, device: torch.device, fused: bool, **hyper) -> torch.optim.Optimizer:
    """Adam (the seed's settings unless given); fused only where it is a lever (CUDA),
    else torch's default (foreach on CUDA)."""
    extra = {"fused": True} if fused and device.type == "cuda" else {}
    return torch.optim.Adam(params, **{**SEED_ADAM, **hyper}, **extra)


def autocast_step(model: torch.nn.Module, forward: Callable, dtype: str, device, fused: bool) -> Callable:
    """fp32, or autocast with fp32 weights (GradScaler for fp16)."""
    opt = make_adam(model.parameters(), device, fused)
    amp = AMP[dtype]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "fp16")

    def step(source: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = loss_of(forward(source))
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def half_model_step(model: torch.nn.Module, forward: Callable, dtype: str, device, fused: bool) -> Callable:
    """fairseq's common.fp16 / common.bf16 (trainer.py casts the model; FP16Optimizer
    keeps fp32 master weights): half forward/backward, grads copied to the fp32 masters,
    clipped and stepped there, weights copied back. fp16 scales the loss (bf16: none)."""
    half = AMP[dtype]
    model.to(half)
    params = [p for p in model.parameters() if p.requires_grad]
    master = [p.detach().float().clone().requires_grad_(True) for p in params]
    opt = make_adam(master, device, fused)
    scale = FP16_LOSS_SCALE if dtype == "fp16" else 1.0

    def step(source: torch.Tensor) -> torch.Tensor:
        loss = loss_of(forward(source.to(half)))
        (loss * scale).backward()
        for m, p in zip(master, params):
            # layerdrop leaves a skipped layer's grads at None: Adam skips those too
            m.grad = None if p.grad is None else p.grad.float().mul_(1.0 / scale)
            p.grad = None
        torch.nn.utils.clip_grad_norm_(master, CLIP_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_copy_(params, master)
        return loss

    return step


def time_steps(step: Callable, source: torch.Tensor, steps: int, warmup: int, device) -> tuple[list, float]:
    times, loss = [], None
    for i in range(warmup + steps):
        t0 = time_start(device)
        loss = step(source)
        dt = time_stop(device, t0)
        if i >= warmup:
            times.append(dt)
    return times, float(loss.detach())


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
