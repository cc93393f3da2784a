"""A narrow fix that lets fairseq 0.12 run the seed commands on a machine without CUDA.

The seed config sets ``common.fp16: true``. Without CUDA, fairseq's FP16Optimizer
crashes (it asks ``torch.cuda.current_device()``), and even past that, half-precision
matmuls on a CPU run about 100x slower than fp32 (measured here: 180 s against 6.5 s
for one step of a 1-layer model). So when CUDA is absent, fp16/bf16 fall back to fp32
with a warning, before fairseq's Trainer casts the model. The saved ``cfg`` then says
what really ran. Nothing changes where CUDA is present.
"""

import logging

import torch
from fairseq.trainer import Trainer
from omegaconf import open_dict

logger = logging.getLogger(__name__)


def _fp32_without_cuda(cfg) -> None:
    common = cfg.common
    if torch.cuda.is_available() or not (common.fp16 or common.bf16):
        return
    logger.warning("common.fp16/bf16 need CUDA, which this machine lacks: training in fp32")
    with open_dict(cfg):
        common.fp16 = common.bf16 = False
        common.memory_efficient_fp16 = common.memory_efficient_bf16 = False


def _patch_trainer() -> None:
    original = Trainer.__init__
    if getattr(original, "_mae_ast_patched", False):
        return

    def __init__(self, cfg, *args, **kwargs):
        _fp32_without_cuda(cfg)
        original(self, cfg, *args, **kwargs)

    __init__._mae_ast_patched = True
    Trainer.__init__ = __init__


_patch_trainer()
