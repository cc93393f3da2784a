"""The fine-tuning dataset (manifest + labels -> fixed-length fbank clips with targets): the
pretraining dataset (a subclass, since the task and tools read its audio state) with every
clip cropped (``crop_start``, random in training only, as SSAST) or padded to
``target_length`` frames, which ``num_tokens`` counts; ``(B, C)`` float multi-hot targets
(the form mixup needs); and an order drawn anew every epoch, deterministic in (seed,
epoch): class-balanced with replacement under ``weighted_sampling`` (SSAST's AudioSet-2M
sampler), else a permutation (pretraining keeps the original's fixed one).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from .labels import LabelSet, read_label_rows
from .mae_ast_dataset import MAE_AST_Dataset
from .sampling import sample_weights, weighted_indices

logger = logging.getLogger(__name__)


class ClassificationDataset(MAE_AST_Dataset):
    def __init__(
        self,
        manifest_path: str,
        label_path: str,
        label_set: LabelSet,
        target_length: int,
        multi_label: bool = False,
        train: bool = False,
        weighted_sampling: bool = False,
        seed: int = 1,
        **kwargs,
    ) -> None:
        # No min/max keep: every manifest entry needs its label line, in order.
        super().__init__(manifest_path, shuffle=train, random_crop=train, seed=seed, **kwargs)
        self.num_classes = label_set.num_classes
        self.labels = read_label_rows(label_path, label_set, self.entries, multi_label, manifest=manifest_path)
        self.target_length = target_length
        self.weights = sample_weights(self.labels, self.num_classes) if weighted_sampling else None
        # Evaluation scores every clip, a silent one too; training skips (and counts) it.
        self.keep_silence = not train
        if weighted_sampling:
            logger.info(f"{manifest_path}: class-balanced sampling, a new draw of {len(self)} clips every epoch")

    def target_frames(self, lengths: list[int]) -> int:
        return self.target_length

    def collater(self, samples: list[dict]) -> dict:
        batch = super().collater(samples)
        if "net_input" in batch:
            batch["target"] = torch.zeros(len(batch["id"]), self.num_classes)
            for i, index in enumerate(batch["id"].tolist()):
                batch["target"][i, self.labels[index]] = 1.0
        return batch

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return np.full(len(indices), self.target_length, dtype=np.int64)

    def size(self, index: int) -> int:
        return self.target_length

    def ordered_indices(self) -> np.ndarray:
        if self.weights is not None:
            return weighted_indices(self.weights, len(self), self.seed, self.epoch)
        if self.shuffle:
            # fairseq only shuffles whole batches
            return np.random.default_rng([self.seed, self.epoch]).permutation(len(self))
        return np.arange(len(self))


def label_paths(data: str, split: str) -> tuple[str, str, str]:
    """``{split}.tsv``, ``{split}.lbl`` and ``label_descriptors.csv`` of a data folder."""
    return (os.path.join(data, f"{split}.tsv"), os.path.join(data, f"{split}.lbl"),
            os.path.join(data, "label_descriptors.csv"))
