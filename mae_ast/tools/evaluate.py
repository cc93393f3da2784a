"""``mae-ast-evaluate``: metrics of a fine-tuned classifier on one split of a data folder.

Exit code: 0, 1 when unreadable clips were left out of the score, 2 when the arguments,
checkpoint or data cannot be used, 3 when clips were in the checkpoint's training data.
Crops, provenance and metrics: README, 'Fine-tuning and evaluation'.
"""

from __future__ import annotations

import argparse
import logging
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
    add_batch_and_device, add_window_args, check_scoring_args, exit_code, json_safe, metric_text, open_classifier,
    print_provenance, tool_parser, write_json,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = tool_parser("mae-ast-evaluate", __doc__)
    p.add_argument("checkpoint", help="fine-tuned classifier checkpoint (checkpoint_best.pt)")
    p.add_argument("data", help="folder with {split}.tsv, {split}.lbl and label_descriptors.csv")
    p.add_argument("--split", type=str.strip, default="test",
                   help="split to evaluate: {split}.tsv/.lbl of DATA (default: test)")
    add_window_args(p, "start")
    p.add_argument("--json", help="also write the metrics to this JSON file (missing folders are made)")
    add_batch_and_device(p, 16, "clips (or windows of one clip)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="score clips the checkpoint was trained on (else exit 3): the train split on purpose")
    p.add_argument("--allow-skipped", action="store_true",
                   help="exit 0 even when unreadable clips were left out of the score (else exit 1)")
    args = p.parse_args(argv)
    check_scoring_args(p, args)
    return args


def open_split(clf: Classifier, data: str, split: str) -> ClassificationDataset:
    manifest, labels, descriptors = label_paths(data, split)
    label_set = read_label_descriptors(descriptors)
    if label_set.names != clf.class_names:
        raise LabelError(f"{descriptors}: classes {label_set.names[:5]}... differ from the checkpoint's "
                         f"{clf.class_names[:5]}... ({label_set.num_classes} vs {len(clf.class_names)})")
    return ClassificationDataset(manifest, labels, label_set, target_length=clf.target_length,
                                 multi_label=clf.multi_label, train=False, feature_spec=clf.feature_spec,
                                 min_frames=clf.model.backbone.grid.min_frames)


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
                    batch_scores[i] = clf.aggregate(clf.scores_feature_windows(sample["source"], hop, batch_size))
        scores.append(batch_scores.numpy())
        targets.append(batch["target"].numpy())
    if not scores:
        raise ManifestError(f"{dataset.manifest_path}: no readable clip to evaluate ({skipped} skipped)")
    return np.concatenate(scores), np.concatenate(targets), skipped, n_long


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
    for kind, metrics in (("positive", "mAP and AUC"), ("negative", "AUC")):
        if result.get(f"classes_without_{kind}"):
            out.append(f"{result[f'classes_without_{kind}']} of {result['n_classes']} classes have no {kind} clip "
                       f"in this split: left out of {metrics}")
    return out


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
        report = provenance.overlap_report(clf.checkpoint.state, args.checkpoint, dataset.paths, keys)
        leaked = print_provenance("mae-ast-evaluate", report, args.split)  # said before any number
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
        result["hop_s"] = hop * clf.feature_spec.shift_samples / clf.feature_spec.sample_rate
    width = max(map(len, result))
    print("\n".join(f"{k:<{width}}  {metric_text(v)}" for k, v in result.items()))
    for note in notes(result, clf, args.crop):
        print(f"mae-ast-evaluate: {note}", file=sys.stderr)
    if skipped:
        print(f"mae-ast-evaluate: {skipped} of {len(dataset)} clips of split {args.split} could not be read and are "
              f"not in the score (named above){'' if args.allow_skipped else '; --allow-skipped accepts that'}",
              file=sys.stderr)
    if args.json:
        write_json(args.json, json_safe({**result, "provenance": report}))
    return exit_code(leaked, args.allow_overlap, skipped and not args.allow_skipped)


if __name__ == "__main__":
    sys.exit(main())
