"""``mae-ast-show``: one PNG of what a checkpoint reconstructs, four rows: the normalised input
fbank, the mask (the checkpoint's own mask type), the reconstruction and the squared error on
masked tokens.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import torch

from ..data.audio_io import AudioError
from ..checkpoints import PRETRAINING, CheckpointError
from ..loading import open_checkpoint, read_clip
from ._common import check_output, output_folder, positive_float, tool_parser


def reconstruct(model, feats: torch.Tensor) -> dict[str, np.ndarray]:
    """Panels over the frames and columns the tokens cover, computed through the model's
    own patch grid (``unpatchify`` averages overlapping patches)."""
    grid = model.grid
    with torch.inference_mode():
        patches = model.patchify(feats[None])
        out = model(feats[None])
        mask = out["mask"][:1]
        recon = patches.clone()  # visible tokens from the input, masked ones from the decoder
        recon[mask] = out["logit_m_list_recon"][0].to(recon.dtype)
        image = grid.unpatchify(patches)[0]
        filled = grid.unpatchify(recon)[0]
        mask_img = grid.unpatchify(mask[..., None].to(patches.dtype).expand_as(patches))[0]
    error = (filled - image).pow(2) * (mask_img > 0)
    return {k: v.float().cpu().numpy() for k, v in
            {"input": image, "mask": mask_img, "reconstruction": filled, "error": error}.items()}


def render(panels: dict[str, np.ndarray], path: str, title: str) -> None:
    try:
        import matplotlib
    except ImportError as err:
        raise SystemExit("mae-ast-show needs matplotlib: pip install 'mae-ast[viz]'") from err

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True, constrained_layout=True)
    lo, hi = np.nanpercentile(panels["input"], [1, 99])
    shaded = np.where(panels["mask"] > 0, np.nan, panels["input"])
    views = [("input fbank (normalised)", panels["input"], "magma", (lo, hi)),
             ("mask (blank = masked tokens)", shaded, "magma", (lo, hi)),
             ("reconstruction (masked tokens from the decoder)", panels["reconstruction"], "magma", (lo, hi)),
             ("squared error on masked tokens", panels["error"], "viridis", (0, None))]
    for ax, (name, img, cmap, (vmin, vmax)) in zip(axes, views):
        im = ax.imshow(img.T, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("feature column")
        fig.colorbar(im, ax=ax, pad=0.01)
    axes[-1].set_xlabel("frame (10 ms)")
    fig.suptitle(title, fontsize=11)
    fig.savefig(output_folder(path), dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("mae-ast-show", __doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("audio")
    parser.add_argument("--out", required=True, help="PNG to write (missing folders are made)")
    parser.add_argument("--seconds", type=positive_float, default=6.0, help="show at most this much audio")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mask")
    args = parser.parse_args(argv)
    check_output(parser, args.out, "--out")

    # matplotlib and PIL log at DEBUG through the root logger that fairseq configures.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    logging.getLogger("PIL").setLevel(logging.WARNING)
    torch.manual_seed(args.seed)
    try:
        # The reconstruction needs the decoder: a classifier's encoder alone cannot draw it.
        model = open_checkpoint(args.checkpoint, kinds=(PRETRAINING,)).model
        spec = model.feature_spec
        wav = read_clip(model, args.audio, int(args.seconds * spec.sample_rate))
    except (CheckpointError, AudioError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    panels = reconstruct(model, spec.compute(wav))
    masked = np.nanmean(panels["mask"])
    mse = np.nansum(panels["error"]) / max(np.nansum(panels["mask"] > 0), 1)
    cfg = model.cfg
    title = (f"{args.audio}: {model.task_cfg.mask_type}, {masked:.0%} masked, MSE on masked {mse:.3f} "
             f"({cfg.ast_kernel_size_time}x{cfg.ast_kernel_size_chan} tokens, stride "
             f"{cfg.ast_kernel_stride_time}x{cfg.ast_kernel_stride_chan}; {spec.describe()})")
    render(panels, args.out, title)
    print(f"wrote {args.out}: {title}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
