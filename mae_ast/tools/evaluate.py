"""mae-ast-evaluate: metrics of a fine-tuned classifier on one split of a data folder.

    mae-ast-evaluate OUT/checkpoints/checkpoint_last.pt DATA --split test [--crop start|windows] --json test.json

By default (``--crop start``) clips are prepared exactly as validation in training, the
fine-tuning recipe's protocol: the first ``target_length`` frames of a longer clip (the
rest is not scored), shorter clips padded, no augmentation. ``--crop windows`` scores
every frame of a longer clip instead, in sliding windows every ``--hop`` seconds (default:
half a window), aggregated as ``mae-ast-predict`` does (mean of the window probabilities
for single-label models, max for multi-label ones). Either way the number of clips
longer than ``target_length`` (``n_cropped``: cut with ``start``, windowed with
``windows``) is printed and written to the JSON.

Scores come from ``mae_ast.classifier``, metrics from
``mae_ast.metrics.classification_metrics``. A digitally silent clip is scored like any
other. Unreadable clips are named and counted; a score that leaves any out exits 1 unless
``--allow-skipped`` (the JSON gives ``split_clips`` beside ``n_clips``, the scored ones).

Provenance (``mae_ast.provenance``): the output names the checkpoint (path and hash),
what it was trained on, and ``overlap_with_training``: how many of the split's clips were
in its fine-tuning or its encoder's pretraining data, by real path and by content. Any
overlap with training data is a loud warning and exit 3 unless ``--allow-overlap``
(scoring the train split on purpose). A split that is the checkpoint's own validation
split (``checkpoint_best.pt`` was selected on it) is said so.

In multi-label metrics a class with no positive clip in the split is
left out of mAP and AUC (and one with no negative clip out of AUC), and counted; a value
that cannot be computed (no class left, or d' of an AUC of exactly 0 or 1) is printed as
n/a or inf and written as null, so the JSON is strict.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

import numpy as np

from .. import provenance
from ..classifier import Classifier
from ..data import identity
from ..data.classification_dataset import ClassificationDataset, label_paths
from ..data.labels import LabelError, read_label_descriptors
from ..data.manifest import ManifestError
from ..metrics import classification_metrics
from ._common import (
    check_output, device_arg, json_safe, open_classifier, positive_float, positive_int, write_json,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mae-ast-evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="fine-tuned classifier checkpoint (checkpoint_best.pt)")
    p.add_argument("data", help="folder with {split}.tsv, {split}.lbl and label_descriptors.csv")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--crop", choices=["start", "windows"], default="start",
                   help="a clip longer than the model's input: start = its first target_length frames, as "
                        "validation in training (default, the recipe's protocol); windows = every frame, in "
                        "sliding windows aggregated as mae-ast-predict does")
    p.add_argument("--hop", type=positive_float, default=None,
                   help="with --crop windows: seconds between window starts, at most the model's input length "
                        "(default: half of it)")
    p.add_argument("--json", help="also write the metrics to this JSON file (missing folders are made)")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="clips (or windows of one clip) per forward pass (default: 16)")
    p.add_argument("--device", type=device_arg, default=None,
                   help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="score clips the checkpoint was trained on (else exit 3): the train split on purpose")
    p.add_argument("--allow-skipped", action="store_true",
                   help="exit 0 even when unreadable clips were left out of the score (else exit 1)")
    args = p.parse_args(argv)
    if args.hop is not None and args.crop != "windows":
        p.error("--hop applies to --crop windows only")
    check_output(p, args.json, "--json")
    return args


def open_split(clf: Classifier, data: str, split: str) -> ClassificationDataset:
    manifest, labels, descriptors = label_paths(data, split)
    label_set = read_label_descriptors(descriptors)
    if label_set.names != clf.class_names:
        raise LabelError(f"{descriptors}: classes {label_set.names[:5]}... differ from the checkpoint's "
                         f"{clf.class_names[:5]}... ({label_set.num_classes} vs {len(clf.class_names)})")
    dataset = ClassificationDataset(manifest, labels, label_set, target_length=clf.target_length,
                                    multi_label=clf.multi_label, train=False, feature_spec=clf.feature_spec,
                                    min_frames=clf.model.backbone.grid.min_frames)
    return dataset


def score_split(clf: Classifier, dataset: ClassificationDataset, batch_size: int, crop: str = "start",
                hop: int | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(scores, targets, skipped clips, clips longer than ``target_length``) over the whole
    split. ``crop="start"`` scores the batches validation sees; ``"windows"`` replaces a long
    clip's score by the aggregate of ``Classifier.scores_feature_windows`` over all of it."""
    scores, targets, skipped, n_long = [], [], 0, 0
    for start in range(0, len(dataset), batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = dataset.collater(samples)
        skipped += batch.get("n_skipped", 0)
        if "net_input" not in batch:
            continue
        net = batch["net_input"]
        batch_scores = clf.scores(net["source"], net["padding_mask"])
        # The collater keeps the usable samples in order: row i of the batch is kept[i].
        kept = dataset.usable(samples)[0]
        for i, sample in enumerate(kept):
            if len(sample["source"]) > clf.target_length:
                n_long += 1
                if crop == "windows":
                    windows = clf.scores_feature_windows(sample["source"], hop, batch_size)
                    batch_scores[i] = clf.aggregate(windows)
        scores.append(batch_scores.numpy())
        targets.append(batch["target"].numpy())
    if not scores:
        raise ManifestError(f"{dataset.manifest_path}: no readable clip to evaluate ({skipped} skipped)")
    return np.concatenate(scores), np.concatenate(targets), skipped, n_long


def table(result: dict) -> str:
    def show(v: object) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.4f}"
        return str(v)

    width = max(len(k) for k in result)
    return "\n".join(f"{k:<{width}}  {show(v)}" for k, v in result.items())


def notes(result: dict, clf: Classifier, crop: str) -> list[str]:
    """What a reader of the numbers must know: clips cut or windowed, classes left out."""
    out = []
    n_long, seconds = result["n_cropped"], clf.input_seconds
    if n_long and crop == "start":
        out.append(f"{n_long} of {result['n_clips']} clips are longer than the model's input ({clf.target_length} "
                   f"frames, {seconds:g} s): only their first {seconds:g} s were scored, as in validation; "
                   "--crop windows scores every frame")
    elif n_long:
        out.append(f"{n_long} of {result['n_clips']} clips are longer than the model's input ({seconds:g} s): "
                   f"scored in sliding windows ({clf.aggregation} over windows); the default --crop start scores "
                   "their first window only, as validation in training")
    if result.get("classes_without_positive"):
        out.append(f"{result['classes_without_positive']} of {result['n_classes']} classes have no positive clip "
                   "in this split: left out of mAP and AUC")
    if result.get("classes_without_negative"):
        out.append(f"{result['classes_without_negative']} of {result['n_classes']} classes have no negative clip "
                   "in this split: left out of AUC")
    return out


def provenance_notes(report: dict, split: str) -> tuple[list[str], list[str]]:
    """(warnings, notes) of an ``overlap_report``: a leak is a warning; a checkpoint selected
    on the scored clips, and a checkpoint without a record, are notes."""
    warnings, out = [], []
    n = report["n_scored_clips"]
    if report["status"] != "recorded":
        out.append(f"{report['checkpoint']} has no provenance record ({report.get('error') or 'it predates records'}): "
                   "cannot check that this split was not trained on")
        return warnings, out
    for phase, found in report["overlap_with_training"].items():
        if "splits" not in found:
            out.append(f"{phase}: {found.get('status')} ({found.get('reason') or found.get('checkpoint') or ''}): "
                       "cannot check this split against it")
    if report["training"]:
        parts = [f"{phase} {name}: {c['by_path']} by path, {c['by_content']} by content"
                 for phase, found in report["overlap_with_training"].items()
                 for name, c in found.get("splits", {}).items() if c["either"]]
        warnings.append(f"{report['training']} of {n} clips of split {split} were in the checkpoint's TRAINING data "
                        f"({'; '.join(parts)}): these numbers are not a held-out score. Pass --allow-overlap to "
                        "score training clips on purpose")
    if report["selection"]:
        if report["selection_only"]:
            out.append(f"the checkpoint was selected on the clips it is scored on: split {split} is its validation "
                       "split (checkpoint_best.pt is the best epoch on these clips): an optimistic number")
        else:
            out.append(f"{report['selection']} of {n} clips of split {split} are in the checkpoint's validation split, "
                       "which it was selected on")
    return warnings, out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    opened = open_classifier("mae-ast-evaluate", args.checkpoint, args.device, args.hop)
    if opened is None:
        return 2
    clf, hop = opened
    try:
        dataset = open_split(clf, args.data, args.split)
        keys = identity.manifest_keys(dataset.manifest_path, dataset.paths)
        report = provenance.overlap_report(clf.checkpoint.state, args.checkpoint,
                                           dataset.paths, keys)
        scores, targets, skipped, n_long = score_split(clf, dataset, args.batch_size, args.crop, hop)
    except (LabelError, ManifestError) as err:
        print(f"mae-ast-evaluate: {err}", file=sys.stderr)
        return 2
    result = {**classification_metrics(scores, targets, clf.multi_label), "split_clips": len(dataset),
              "skipped_clips": int(skipped), "crop": args.crop, "n_cropped": n_long, "split": args.split,
              "checkpoint": args.checkpoint, "checkpoint_hash": report["checkpoint_hash"],
              "overlap_with_training": report["training"],
              "selected_on_scored_clips": bool(report["selection_only"]) if report["status"] == "recorded" else None}
    if args.crop == "windows":
        spec = clf.feature_spec
        result["hop_s"] = hop * spec.shift_samples / spec.sample_rate
    print(table(result))
    for note in notes(result, clf, args.crop):
        print(f"mae-ast-evaluate: {note}", file=sys.stderr)
    leaks, more = provenance_notes(report, args.split)
    for note in more:
        print(f"mae-ast-evaluate: {note}", file=sys.stderr)
    for leak in leaks:
        print(f"mae-ast-evaluate: WARNING: {leak}", file=sys.stderr)
    if skipped:
        print(f"mae-ast-evaluate: {skipped} of {len(dataset)} clips of split {args.split} could not be read and are "
              f"not in the score (named above){'' if args.allow_skipped else '; --allow-skipped accepts that'}",
              file=sys.stderr)
    if args.json:
        write_json(args.json, json_safe({**result, "provenance": report}))
    if leaks and not args.allow_overlap:
        return 3
    return 1 if skipped and not args.allow_skipped else 0


if __name__ == "__main__":
    sys.exit(main())
