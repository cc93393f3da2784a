"""``mae-ast-probe``: the standard linear-probe number of a checkpoint on a labelled data folder.
The library is ``mae_ast.probe``; the protocol, output and exit codes: README,
'Fine-tuning and evaluation' (Linear probe).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..checkpoints import CheckpointError
from ..data.audio_io import AudioError
from ..data.labels import LabelError
from ..data.manifest import ManifestError
from ..probe import POOLS, ProbeConfig, ProbeError, run_probe
from ._common import (
    add_batch_and_device, check_output, exit_code, json_safe, metric_text, print_provenance, tool_parser,
    write_json,
)


def layer_arg(text: str) -> int | str:
    """``all`` or an encoder layer counted from 1 (argparse ``type``)."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a layer number (1 = first) or 'all'") from None
    if value == 0:
        raise argparse.ArgumentTypeError("layers count from 1 (-1 = the last), got 0")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = tool_parser("mae-ast-probe", __doc__)
    p.add_argument("checkpoint", help="pretraining or classifier checkpoint, or an mae-ast-export-hf folder")
    p.add_argument("data", help="folder with {train,valid,test}.tsv, {split}.lbl and label_descriptors.csv")
    p.add_argument("--layer", type=layer_arg, default=None,
                   help="encoder layer 1..L (-1 = the last) whose features are probed, or 'all' (each layer fitted, "
                        "the best on valid kept: on held-out train when valid shares test clips) (default: the last)")
    p.add_argument("--pool", choices=POOLS, default="mean", help="pooling over a clip's time steps (default: mean)")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--multi-label", dest="multi_label", action="store_const", const=True, default=None,
                        help="one-vs-rest and mAP (default: when some clip has several labels)")
    labels.add_argument("--single-label", dest="multi_label", action="store_const", const=False,
                        help="multinomial and accuracy; a clip with several labels is an error")
    p.add_argument("--json", help="also write the result to this JSON file (missing folders are made)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="exit 0 even when test clips were in the checkpoint's training data or the probe's train split "
                        "(otherwise a loud warning and exit 3)")
    p.add_argument("--allow-skipped", action="store_true",
                   help="exit 0 even when unreadable test clips were left out of the test score (else exit 1)")
    p.add_argument("--cache", help="folder for the pooled features of each split, reused while current")
    add_batch_and_device(p, 16, "clips")
    args = p.parse_args(argv)
    check_output(p, args.json, "--json")
    check_output(p, args.cache, "--cache", folder=True)
    return args


def report(result: dict) -> str:
    metric = result["metric"]
    lines = []
    on = "valid" if result["selection_split"] == "valid" else "held-out train"
    if len(result["layers"]) > 1:
        lines += [f"layer {row['layer']:>2}  C={row['C']:<8.3g} {on} {metric} {metric_text(row['valid_' + metric])}"
                  for row in result["layers"]]
    n = result["n_clips"]
    lines += [
        f"layer      {result['layer']} ({result['layer_choice']})",
        f"C          {result['C']:g} (best {on} {metric} over {len(result['C_grid'])} values "
        f"{min(result['C_grid']):g}..{max(result['C_grid']):g})",
        f"{on} {metric:<8} {metric_text(result['valid'][metric])}  ({n['selection']} clips)",
        f"test {metric:<9} {metric_text(result['test'][metric])}  ({n['test']} clips; {n['train']} train clips, "
        f"dim {result['dim']}, {result['pool']} pooling)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    cfg = ProbeConfig(layer=args.layer, pool=args.pool, multi_label=args.multi_label, batch_size=args.batch_size,
                      device=args.device, cache=args.cache)
    try:
        result = run_probe(args.checkpoint, args.data, cfg)
    except (CheckpointError, ProbeError, LabelError, ManifestError, AudioError) as err:
        print(f"mae-ast-probe: {err}", file=sys.stderr)
        return 2
    probe_leak = result["provenance"]["probe_train_overlap"]["either"]
    leaks = [f"{probe_leak} test clips are also clips of the probe's train split (by real path or content): the "
             "probe is fitted on clips it is scored on; fix the split (mae-ast-prepare), or pass --allow-overlap to "
             "accept it"] if probe_leak else []
    leaked = print_provenance("mae-ast-probe", result["provenance"], "test", leaks)  # before the number
    sys.stderr.flush()
    print(report(result))
    skipped = {k: v for k, v in result["skipped_clips"].items() if v}
    if skipped:
        print(f"mae-ast-probe: unreadable clips left out: {skipped}", file=sys.stderr)
    partial = bool(skipped.get("test")) and not args.allow_skipped  # evaluate's rule: a partial score is no pass
    if partial:
        print(f"mae-ast-probe: the test score leaves out {skipped['test']} of its clips (named above); "
              "--allow-skipped accepts that", file=sys.stderr)
    if args.json:
        write_json(args.json, json_safe(result))
    return exit_code(leaked, args.allow_overlap, partial)


if __name__ == "__main__":
    sys.exit(main())
