"""Check that fp16 and bf16 autocast losses match fp32 on the same batch and mask.

    python bench/precision_check.py [--device cuda] [--tiny]

Builds the 12-layer patch and frame models (``--tiny``: 2 layers, 256-d, 2 s clips, for CPUs),
draws one batch and one mask, and evaluates the loss (eval mode: no dropout) in fp32 and
under autocast fp16 / bf16. Passes when |loss - loss_fp32| / loss_fp32 is under 1e-2
(bf16 keeps 8 bits of mantissa: relative errors of a few 1e-3 are expected) and every
loss is finite. Exit code 1 on failure.
"""

from __future__ import annotations

import argparse
import sys

import torch

from step_models import build, clip_frames, loss_of

TOLERANCE = 1e-2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    ok = True
    print(f"{'model':7}{'dtype':6}{'loss':>12}{'fp32 loss':>12}{'rel. diff':>11}")
    for kind in ("patch", "frame"):
        torch.manual_seed(0)
        model = build(kind)
        if args.tiny:
            from mae_ast.models.mae_ast import MAE_AST

            cfg = model.cfg
            cfg.encoder_layers, cfg.encoder_embed_dim, cfg.decoder_embed_dim = 2, 256, 256
            cfg.encoder_ffn_embed_dim, cfg.encoder_attention_heads, cfg.max_token_length = 1024, 4, 2000
            model = MAE_AST(cfg, model.task_cfg)
        model = model.to(device).eval()
        source = torch.randn(args.clips, clip_frames(args.tiny), 128, device=device) * 3 - 6
        T = model.patchify(source).shape[1]
        plan = model.forward_mask(args.clips, T, None, device)
        model.forward_mask = lambda *a, plan=plan: plan  # the same mask for every dtype
        with torch.no_grad():
            ref = loss_of(model(source)).item()
            for name, dtype in dtypes.items():
                with torch.autocast(device.type, dtype=dtype):
                    loss = loss_of(model(source)).item()
                rel = abs(loss - ref) / abs(ref)
                good = rel < TOLERANCE and torch.isfinite(torch.tensor(loss))
                ok &= bool(good)
                print(f"{kind:7}{name:6}{loss:12.5f}{ref:12.5f}{rel:11.2e}{'' if good else '  FAIL'}")
    print("OK" if ok else "FAILED", f"(tolerance {TOLERANCE:g}, device {device})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
