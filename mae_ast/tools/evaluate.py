"""mae-ast-evaluate: metrics of a fine-tuned classifier on one split of a data folder.

    mae-ast-evaluate OUT/checkpoint_best.pt DATA --split test --json test.json

Clips are prepared exactly as validation in training (start crop / padding to the
checkpoint's target_length, no augmentation) and scored through ``mae_ast.classifier``;
the metrics are ``mae_ast.metrics.classification_metrics``. Unreadable clips are named,
counted and left out of the metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np

from ..classifier import Classifier, load_classifier
from ..data.classification_dataset import ClassificationDataset, label_paths
from ..data.labels import LabelError, read_label_descriptors
from ..data.manifest import ManifestError
from ..inference import CheckpointError
from ..metrics import classification_metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mae-ast-evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="fine-tuned classifier checkpoint (checkpoint_best.pt)")
    p.add_argument("data", help="folder with {split}.tsv, {split}.lbl and label_descriptors.csv")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward pass (default: 16)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    return p.parse_args(argv)


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


def score_split(clf: Classifier, dataset: ClassificationDataset, batch_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, targets, skipped clips) over the whole split."""
    scores, targets, skipped = [], [], 0
    for start in range(0, len(dataset), batch_size):
        batch = dataset.collater([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        skipped += batch.get("n_skipped", 0)
        if "net_input" not in batch:
            continue
        net = batch["net_input"]
        scores.append(clf.scores(net["source"], net["padding_mask"]).numpy())
        targets.append(batch["target"].numpy())
    if not scores:
        raise ManifestError(f"{dataset.manifest_path}: no readable clip to evaluate ({skipped} skipped)")
    return np.concatenate(scores), np.concatenate(targets), skipped


def table(result: dict) -> str:
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in result.items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        clf = load_classifier(args.checkpoint, device=args.device)
        dataset = open_split(clf, args.data, args.split)
        scores, targets, skipped = score_split(clf, dataset, args.batch_size)
    except (CheckpointError, LabelError, ManifestError) as err:
        print(f"mae-ast-evaluate: {err}", file=sys.stderr)
        return 2
    result = {**classification_metrics(scores, targets, clf.multi_label), "skipped_clips": int(skipped),
              "split": args.split, "checkpoint": args.checkpoint}
    print(table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
