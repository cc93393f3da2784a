"""``mae-ast-extract``: write one ``.npy`` of encoder features per audio file.

    mae-ast-extract CKPT AUDIO_OR_FOLDER_OR_MANIFEST --out DIR [--layer N] [--batch-size 8]

Features are computed as the checkpoint was trained (its feature spec: bins, deltas,
rate), time-aligned (one row per ``ast_kernel_stride_time`` x 10 ms), float32, shape
(time, dim). ``--layer`` counts encoder layers from 1 (default: the last). Outputs mirror
the inputs' relative paths, extension kept (``a.flac`` -> ``a.flac.npy``), so ``a.flac``
and ``a.wav`` never overwrite each other; two inputs that would still share an output
(the same file listed twice) are refused before anything is written. Unreadable files
are reported and skipped; the exit code is 1 if any were.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from ..data.audio_io import AUDIO_EXTENSIONS, AudioError
from ..data.features import short_of_one_patch
from ..data.manifest import ManifestError, read_manifest
from ..checkpoints import CheckpointError
from ..loading import load
from ..data.datadir import find_audio
from ._common import check_output, device_arg, positive_int


def list_inputs(path: str) -> list[tuple[str, str]]:
    """(full path, relative output name) pairs for a file, a folder or a manifest. The
    output name keeps the extension: a.flac and a.wav in one folder are two outputs."""
    if os.path.isdir(path):
        return [(os.path.join(path, rel), rel) for rel in find_audio(path, AUDIO_EXTENSIONS)]
    if path.endswith(".tsv"):
        m = read_manifest(path)
        return [(p, inside_name(os.path.relpath(p, m.root))) for p in m.paths]
    return [(path, os.path.basename(path))]


def inside_name(rel: str) -> str:
    """An output name that stays under ``--out``: a manifest entry outside its root
    (``../_silence_/a.wav``, or an absolute path) keeps its path, each ``..`` written as
    ``_up_``, instead of escaping the output folder."""
    parts = os.path.normpath(rel).replace(os.sep, "/").split("/")
    return "/".join("_up_" if part == ".." else part for part in parts if part not in ("", "."))


def check_unique(items: list[tuple[str, str]]) -> None:
    """Refuse, before writing anything, inputs that would share an output file."""
    seen: dict[str, str] = {}
    for path, name in items:
        if name in seen:
            raise ValueError(f"{seen[name]} and {path} would both be written to {name}.npy; "
                             "list each file once")
        seen[name] = path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mae-ast-extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("inputs", help="an audio file, a folder of audio, or a manifest .tsv")
    parser.add_argument("--out", required=True, help="output folder (made when missing)")
    parser.add_argument("--layer", type=int, default=None, help="encoder layer 1..L (default: last)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="clips per forward pass (default: 8)")
    parser.add_argument("--device", type=device_arg, default=None,
                        help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    args = parser.parse_args(argv)
    if not os.path.exists(args.inputs):
        parser.error(f"{args.inputs}: no such file or folder")
    if args.layer is not None and args.layer < 1:
        parser.error(f"--layer counts encoder layers from 1, got {args.layer}")
    check_output(parser, args.out, "--out", folder=True)
    try:
        items = list_inputs(args.inputs)
        check_unique(items)
        model = load(args.checkpoint, device=args.device)
    except (CheckpointError, ManifestError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = next(model.parameters()).device
    depth = len(model.encoder.layers)
    layer = depth if args.layer is None else args.layer
    if not 1 <= layer <= depth:
        parser.error(f"--layer must be in 1..{depth}")

    spec, grid = model.feature_spec, model.grid
    bad: list[AudioError] = []
    written = 0
    progress = tqdm(total=len(items), desc="extracting", unit="file")
    # Read a batch, run it (stopping at the asked layer), write one file per clip.
    for start in range(0, len(items), args.batch_size):
        batch = []
        for path, stem in items[start : start + args.batch_size]:
            try:
                wav = spec.read(path)
                short = short_of_one_patch(spec.frames(len(wav)), grid.min_frames)
                if short:
                    raise AudioError(path, short)
                batch.append((stem, wav.to(device)))
            except AudioError as err:
                bad.append(err)
        if batch:
            with torch.inference_mode():
                out = model.extract_layers([w for _, w in batch], output_layer=layer)
            feats, pad = out["hidden_states"][layer - 1], out["padding_mask"]
            for i, (stem, _) in enumerate(batch):
                dest = os.path.join(args.out, stem + ".npy")
                os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
                np.save(dest, feats[i][~pad[i]].float().cpu().numpy())
                written += 1
        progress.update(len(items[start : start + args.batch_size]))
    progress.close()
    for err in bad:
        print(f"skipped: {err}", file=sys.stderr)
    print(f"wrote {written} feature files (layer {layer} of {depth}, dim {model.cfg.encoder_embed_dim}) "
          f"to {args.out}; skipped {len(bad)} unreadable")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
