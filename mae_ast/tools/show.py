"""``mae-ast-show``: picture what a checkpoint reconstructs.

    mae-ast-show CKPT AUDIO --out fig.png [--seconds 6] [--seed 0]

One PNG, four rows: the input fbank (normalised as the model sees it), the mask (masked
tokens shaded), the reconstruction (visible tokens from the input, masked ones from the
decoder), and the squared error on masked tokens. Works for patch and frame models;
the mask type is the checkpoint's own.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from ..data.audio_io import read_audio
from ..data.fbank import fbank
from ..inference import load


def unpatchify(tokens: torch.Tensor, kt: int, kc: int, chan_blocks: int) -> torch.Tensor:
    """(tokens, kt*kc) -> (frames, bins): the inverse of the model's patch order."""
    nt = tokens.shape[0] // chan_blocks
    x = tokens.reshape(nt, chan_blocks, kt, kc).permute(0, 2, 1, 3)
    return x.reshape(nt * kt, chan_blocks * kc)


def reconstruct(model, feats: torch.Tensor) -> dict[str, np.ndarray]:
    cfg = model.cfg
    kt, kc = cfg.ast_kernel_size_time, cfg.ast_kernel_size_chan
    with torch.inference_mode():
        patches = model.patchify(feats[None])[0]
        out = model(feats[None], padding_mask=torch.zeros(1, len(feats), dtype=torch.bool, device=feats.device))
        mask = out["mask"][0]
        recon = patches.clone()
        recon[mask] = out["logit_m_list_recon"][0].to(recon.dtype)
    chan = model.chan_blocks
    image = unpatchify(patches, kt, kc, chan)
    filled = unpatchify(recon, kt, kc, chan)
    mask_img = unpatchify(mask[:, None].float().expand(-1, kt * kc), kt, kc, chan)
    error = (filled - image).pow(2) * mask_img
    return {k: v.float().cpu().numpy() for k, v in
            {"input": image, "mask": mask_img, "reconstruction": filled, "error": error}.items()}


def render(panels: dict[str, np.ndarray], path: str, title: str) -> None:
    import logging

    try:
        import matplotlib
    except ImportError as err:
        raise SystemExit("mae-ast-show needs matplotlib: pip install 'mae-ast[viz]'") from err

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True, constrained_layout=True)
    lo, hi = np.percentile(panels["input"], [1, 99])
    shaded = np.where(panels["mask"] > 0, np.nan, panels["input"])
    views = [("input fbank (normalised)", panels["input"], "magma", (lo, hi)),
             ("mask (blank = masked tokens)", shaded, "magma", (lo, hi)),
             ("reconstruction (masked tokens from the decoder)", panels["reconstruction"], "magma", (lo, hi)),
             ("squared error on masked tokens", panels["error"], "viridis", (0, None))]
    for ax, (name, img, cmap, (vmin, vmax)) in zip(axes, views):
        im = ax.imshow(img.T, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("mel bin")
        fig.colorbar(im, ax=ax, pad=0.01)
    axes[-1].set_xlabel("frame (10 ms)")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mae-ast-show", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("audio")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--seconds", type=float, default=6.0, help="show at most this much audio")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mask")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = load(args.checkpoint, device="cpu")
    wav = read_audio(args.audio)[: int(args.seconds * 16000)]
    feats = fbank(wav, num_mel_bins=model.task_cfg.feature_dim)
    panels = reconstruct(model, feats)
    masked = panels["mask"].mean()
    mse = panels["error"].sum() / max(panels["mask"].sum(), 1)
    title = (f"{args.audio}: {model.task_cfg.mask_type}, {masked:.0%} masked, "
             f"MSE on masked {mse:.3f} ({model.cfg.ast_kernel_size_time}x{model.cfg.ast_kernel_size_chan} tokens)")
    render(panels, args.out, title)
    print(f"wrote {args.out}: {title}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
