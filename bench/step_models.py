"""The pretraining-step benchmark's models: the seed's patch and frame configs, the batch
fairseq builds for them, the original reference and the SSAST-style variant, the loss
(the criterion's own) and hand-counted FLOPs. Timing lives in ``step_timing.py``."""

from __future__ import annotations

import torch

from mae_ast.criterions.mae_ast_criterion import pretraining_loss
from mae_ast.models.builders import original_model, task_namespace
from mae_ast.models.mae_ast import MAE_AST, MAE_AST_Config

SEED_MAX_TOKENS = 8388608
CLIP_SECONDS = 10.0
FRAMES_10S = 998  # Kaldi fbank frames of 160000 samples (25 ms window, 10 ms shift)
TINY_FRAMES = 198  # --tiny: 2 s clips (code paths only; a 10 s bf16 step is emulated, minutes, on a CPU)


def clip_frames(tiny: bool) -> int:
    """Frames per benchmark clip: the seed's 10 s, or 2 s for the toy runs."""
    return TINY_FRAMES if tiny else FRAMES_10S
MODELS = {
    "patch": dict(kt=16, kc=16, mask_type="chunk_mask"),
    "frame": dict(kt=2, kc=128, mask_type="random_mask"),
}
TINY = dict(encoder_layers=2, encoder_embed_dim=256, decoder_embed_dim=256, encoder_ffn_embed_dim=1024,
            encoder_attention_heads=4, decoder_layers=1)


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


def build(kind: str, tiny: bool = False, compile_blocks: bool = False, layerdrop: float = 0.05) -> MAE_AST:
    """The seed's model of ``kind`` (``layerdrop``: its encoder_layerdrop, 0.05)."""
    spec = MODELS[kind]
    cfg = MAE_AST_Config(
        ast_kernel_size_time=spec["kt"], ast_kernel_size_chan=spec["kc"], ast_kernel_stride_time=spec["kt"],
        ast_kernel_stride_chan=spec["kc"], enc_sine_pos=True, dec_sine_pos=True, dropout_input=0.1,
        encoder_layerdrop=layerdrop, random_mask_prob=0.75, compile_blocks=compile_blocks, **(TINY if tiny else {}),
    )
    return MAE_AST(cfg, task_namespace(mask_type=spec["mask_type"]))


def build_original(model: MAE_AST) -> torch.nn.Module:
    return original_model(model).train()


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
    """The criterion's loss (seed weights: reconstruction 10, classification 1) of a net output
    of either model (the original's outputs have the same keys)."""
    recon, classes, target = (out[k].float() for k in ("logit_m_list_recon", "logit_m_list_class", "target_m_list"))
    return pretraining_loss(recon, classes, target)[0]


def layer_flops(n_tokens: int, depth: int, dim: int, ffn: int) -> float:
    """Forward matmul FLOPs of ``depth`` transformer blocks over ``n_tokens`` tokens."""
    linear = n_tokens * (2 * dim * 3 * dim + 2 * dim * dim + 2 * 2 * dim * ffn)
    attention = 2 * 2 * n_tokens * n_tokens * dim
    return depth * (linear + attention)


def step_flops(model: MAE_AST, B: int, ssast: bool, frames: int = FRAMES_10S) -> float:
    """Matmul FLOPs of one training step (forward x 3 for forward + backward)."""
    cfg = model.cfg
    D, F, P = cfg.encoder_embed_dim, cfg.encoder_ffn_embed_dim, cfg.ast_kernel_size_time * cfg.ast_kernel_size_chan
    T = (frames // cfg.ast_kernel_size_time) * model.chan_blocks
    R = max(1, int(0.25 * T))
    M = T - R
    fwd = 2 * T * P * D  # post_extract_proj
    fwd += layer_flops(T if ssast else R, cfg.encoder_layers, D, F)
    if not ssast:
        fwd += layer_flops(T, cfg.decoder_layers, D, F)
    fwd += 2 * 2 * M * D * P  # reconstruction and classification heads
    fwd += 2 * M * M * P  # InfoNCE scores
    return 3.0 * B * fwd
