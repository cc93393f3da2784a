"""Layer-wise learning rates of a fine-tuned classifier (BEiT's and MAE's layer decay), as
``optim_overrides`` lr scales: only fairseq's composite optimizer (``dynamic_groups``) honours
them, so the task refuses the others when a scale is not 1.
"""

from __future__ import annotations

import torch.nn as nn


def layer_id(name: str, num_layers: int, layer_norm_first: bool) -> int:
    """Depth of a classifier parameter: 0 = embedding, 1..L = encoder layers, L+1 = head (and a
    pre-LN encoder's final LayerNorm)."""
    if not name.startswith("backbone."):
        return num_layers + 1
    parts = name.split(".")
    if parts[1:3] == ["encoder", "layers"]:
        return int(parts[3]) + 1
    if parts[1:3] == ["encoder", "layer_norm"] and layer_norm_first:
        return num_layers + 1
    return 0


def lr_scales(model: nn.Module, layer_decay: float, head_lr_scale: float) -> dict[str, float]:
    """Each trainable parameter's lr multiplier (head_lr_scale on top outside the backbone)."""
    depth, pre_ln = len(model.backbone.encoder.layers), model.backbone.cfg.layer_norm_first
    return {name: layer_decay ** (depth + 1 - layer_id(name, depth, pre_ln))
            * (head_lr_scale if not name.startswith("backbone.") else 1.0)
            for name, p in model.named_parameters() if p.requires_grad}


def set_optim_overrides(model: nn.Module, layer_decay: float, head_lr_scale: float) -> bool:
    """Mark each parameter whose scale is not 1 with ``optim_overrides`` (and clear stale
    marks); True when any parameter needs its own group."""
    for p in model.parameters():
        if hasattr(p, "optim_overrides"):
            del p.optim_overrides
    scales = {name: s for name, s in lr_scales(model, layer_decay, head_lr_scale).items() if s != 1.0}
    for name, scale in scales.items():
        model.get_parameter(name).optim_overrides = {"optimizer": {"lr_scale": float(scale)}}
    return bool(scales)
