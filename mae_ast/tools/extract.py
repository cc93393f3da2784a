"""``mae-ast-extract``: write one ``.npy`` of encoder features per audio file (float32, time x dim,
one row per ``ast_kernel_stride_time`` x 10 ms), named after the input's relative path with its
extension (``a.flac.npy``); inputs that would share an output are refused before anything is
written. Exit code 1 if any file was unreadable (skipped), 2 if unusable input.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from tqdm import tqdm

from ..data.audio_io import AudioError
from ..data.manifest import ManifestError
from ..checkpoints import CheckpointError
from ..loading import encode_clips, load, resolve_layers
from ._common import add_batch_and_device, check_output, list_inputs, tool_parser


def check_unique(items: list[tuple[str, str]]) -> None:
    """Refuse, before writing anything, inputs that would share an output file."""
    seen: dict[str, str] = {}
    for path, name in items:
        if name in seen:
            raise ValueError(f"{seen[name]} and {path} would both be written to {name}.npy; "
                             "list each file once")
        seen[name] = path


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("mae-ast-extract", __doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("inputs", help="an audio file, a folder of audio, or a manifest .tsv")
    parser.add_argument("--out", required=True, help="output folder (made when missing)")
    parser.add_argument("--layer", type=int, default=-1, help="encoder layer 1..L, -1 = the last (default)")
    add_batch_and_device(parser, 8, "clips")
    args = parser.parse_args(argv)
    if not os.path.exists(args.inputs):
        parser.error(f"{args.inputs}: no such file or folder")
    check_output(parser, args.out, "--out", folder=True)
    try:
        items = list_inputs(args.inputs)
        check_unique(items)
        model = load(args.checkpoint, device=args.device)
    except (CheckpointError, ManifestError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    depth = len(model.encoder.layers)
    try:
        layer = resolve_layers(args.layer, depth)[0]
    except ValueError as err:
        parser.error(f"--layer: {err}")

    bad: list[AudioError] = []
    progress = tqdm(total=len(items), desc="extracting", unit="file")
    for stems, out, errors in encode_clips(model, [(stem, path) for path, stem in items], args.batch_size, layer):
        bad += errors
        for i, stem in enumerate(stems):
            dest = os.path.join(args.out, stem + ".npy")
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            np.save(dest, out["hidden_states"][layer - 1][i][~out["padding_mask"][i]].float().cpu().numpy())
        progress.update(len(stems) + len(errors))
    progress.close()
    for err in bad:
        print(f"skipped: {err}", file=sys.stderr)
    print(f"wrote {len(items) - len(bad)} feature files (layer {layer} of {depth}, dim {model.cfg.encoder_embed_dim}) "
          f"to {args.out}; skipped {len(bad)} unreadable")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
