"""``mae-ast-validate``: check a data folder's manifests before a long run. Every file goes
through training's own ``clip_features`` (the checks: README, 'Your own data'); exit code 1 if
anything is wrong, so it can gate a job script. ``--recipe`` advice does not change it.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

from tqdm import tqdm

from ..data.audio_io import AudioError
from ..data.features import FeatureSpec, clip_features
from ..data.classification_dataset import label_paths
from ..data.datadir import SPLITS
from ..data.labels import LabelError, read_label_descriptors, read_labels
from ..data.manifest import ManifestError, read_manifest
from ..models.mae_ast import MAE_AST_Config
from ._common import check_splits, pool_map, split_list, tool_parser
from .recipe_advice import load_recipe, recipe_advice


def check_file(item: tuple[str, int, int, FeatureSpec, int]) -> tuple[int, str, str | None]:
    path, lineno, size, spec, min_frames = item
    try:
        clip_features(path, spec, expected_samples=size, min_frames=min_frames)
    except AudioError as err:
        return lineno, path, err.reason
    return lineno, path, None


def validate_split(manifest: str, workers: int, spec: FeatureSpec | None = None,
                   min_frames: int = 1) -> tuple[int, collections.Counter, list[str]]:
    spec = spec or FeatureSpec()
    m = read_manifest(manifest)
    # Items made as the pool takes them (its pipe holds a few chunks), results read in
    # order: memory stays the packed manifest's at 2 M clips, not a tuple per clip.
    items = ((m.paths[i], int(m.lines[i]), int(m.sizes[i]), spec, min_frames) for i in range(len(m.paths)))
    reasons, problems = collections.Counter(), []
    results = pool_map(check_file, items, workers, chunksize=8)
    for lineno, path, reason in tqdm(results, total=len(m.paths), desc=os.path.basename(manifest), unit="file"):
        if reason is not None:
            reasons[summary_reason(reason)] += 1
            problems.append(f"{manifest}:{lineno}: {path}: {reason}")
    return len(m.paths), reasons, problems


def summary_reason(reason: str) -> str:
    """The kind of problem, for the table: numbers and details dropped."""
    kinds = ("truncated", "shorter than one patch", "shorter than one", "file not found", "is a directory",
             "not on the [-1, 1] scale")
    return next((kind for kind in kinds if kind in reason), reason.split(" (")[0])


def check_labels(data: str, split: str) -> str | None:
    """The problem of ``{split}.lbl`` with training's own reader, or None (also when there is
    no such file). Read as multi-label: a single-label file reads the same."""
    manifest, labels, descriptors = label_paths(data, split)
    if not os.path.isfile(labels):
        return None
    try:
        label_set = read_label_descriptors(descriptors)
        read_labels(labels, label_set, read_manifest(manifest).entries, True, manifest)
    except (LabelError, ManifestError) as err:
        return str(err)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("mae-ast-validate", __doc__)
    parser.add_argument("data", help="folder holding the {split}.tsv manifests")
    parser.add_argument("--splits", type=split_list, help="comma-separated splits, each of which must exist "
                        "(default: those of train, valid, test the folder has)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--patch-frames", type=int, default=MAE_AST_Config.ast_kernel_size_time,
                        help="frames of one patch (model.ast_kernel_size_time: 16 for patch models, 2 for frame "
                        "models; default %(default)s)")
    parser.add_argument("--sample-rate", type=int, default=FeatureSpec.sample_rate, help="as task.sample_rate")
    parser.add_argument("--recipe", help="a fine-tuning config (config/finetune/*.yaml): print advice on it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of --recipe, as given to fairseq-hydra-train (repeatable)")
    args = parser.parse_args(argv)
    if args.recipe and not os.path.isfile(args.recipe):
        parser.error(f"--recipe {args.recipe}: no such file")
    if [s for s in args.set if "=" not in s] or (args.set and not args.recipe):
        parser.error("--set takes KEY=VALUE, and only with --recipe")
    check_splits(parser, args.data, args.splits or [])
    spec = FeatureSpec(sample_rate=args.sample_rate)
    failed = check_folder(args, spec)
    if args.recipe:
        for line in recipe_advice(*load_recipe(args.recipe, args.set), args.data, spec):
            print(f"advice: {line}")
    return 1 if failed else 0


def check_folder(args: argparse.Namespace, spec: FeatureSpec) -> bool:
    """Check each split's files and labels and print the table; True if anything is wrong."""
    rows, failed = [], False
    splits = args.splits or [s for s in SPLITS if os.path.exists(os.path.join(args.data, f"{s}.tsv"))]
    for split in splits:
        manifest = os.path.join(args.data, f"{split}.tsv")
        try:
            total, reasons, problems = validate_split(manifest, args.workers, spec, args.patch_frames)
        except ManifestError as err:
            print(f"error: {err}", file=sys.stderr)
            rows.append((split, "-", "-", "malformed manifest"))
            failed = True
            continue
        for line in problems:
            print(line, file=sys.stderr)
        bad = sum(reasons.values())
        label_problem = check_labels(args.data, split)
        details = [f"{n} {r}" for r, n in reasons.most_common()]
        if label_problem:
            print(f"error: {label_problem}", file=sys.stderr)
            details.append("labels unusable")
        failed |= bad > 0 or label_problem is not None
        rows.append((split, str(total), str(bad), ", ".join(details) or "-"))
    if not rows:
        print(f"error: no manifests ({','.join(SPLITS)}) in {args.data}", file=sys.stderr)
        return True
    print(f"\n{'split':<8}{'files':>8}{'bad':>6}  problems")
    for split, total, bad, detail in rows:
        print(f"{split:<8}{total:>8}{bad:>6}  {detail}")
    print("\nOK: every file decodes (and every label file reads)" if not failed
          else "\nFAILED: fix or remove the files above")
    return failed


if __name__ == "__main__":
    sys.exit(main())
