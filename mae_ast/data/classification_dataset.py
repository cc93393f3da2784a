"""The fine-tuning dataset: manifest + labels -> fixed-length fbank clips with targets.

Reuses the pretraining dataset for everything about audio (manifest, decoding through
``clip_features``, the fbank cache, bad files skipped, named once and counted as
``n_skipped``, placeholder batches, the batching report). What differs:

* every clip is padded or cropped to ``target_length`` frames (SSAST's fixed input); the
  padding mask marks the padded frames so the model masks them in attention and pooling;
* cropping is random in training (``crop_start``, the pretraining dataset's rule: a new
  offset every epoch, fixed by (seed, epoch, clip), so resumes and dataloader workers
  agree) and from the start for evaluation, as SSAST;
* ``num_tokens`` is ``target_length``: ``dataset.batch_size`` counts clips and
  ``dataset.max_tokens`` (= clips x target_length) works too;
* targets are ``(B, C)`` float multi-hot (one-hot for single-label), the form mixup needs;
* with ``weighted_sampling`` each epoch is a fresh class-balanced draw with replacement
  (SSAST's AudioSet-2M sampler), deterministic in (seed, epoch); without, a new
  permutation every epoch. (Pretraining keeps the original's order: one permutation under
  fairseq's numpy seed, the same every epoch, inside length-sorted batches.)

A subclass, not a wrapper: it is the audio dataset with another crop length and targets,
and the task and tools read the audio side's state through it (``paths``,
``manifest_path``, ``min_frames``, ``feature_spec``, ``use_cache``, ``usable``, the
batching report), which a wrapper would forward one by one.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from .augment import pad_or_crop
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
        self.label_set = label_set
        self.num_classes = label_set.num_classes
        self.labels = read_label_rows(label_path, label_set, self.entries, multi_label, manifest=manifest_path)
        self.target_length = target_length
        self.multi_label = multi_label
        self.train = train
        self.weights = sample_weights(self.labels, self.num_classes) if weighted_sampling else None
        # Evaluation scores every clip, a silent one too; training skips (and counts) it.
        self.keep_silence = not train
        if weighted_sampling:
            logger.info(f"{manifest_path}: class-balanced sampling, a new draw of {len(self)} clips every epoch")

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["labels"] = self.labels[index]
        return item

    def fix_clip(self, feat: torch.Tensor, index: int) -> tuple[torch.Tensor, int]:
        """Cropped (``crop_start``) or padded to ``target_length``, and its valid frames."""
        return pad_or_crop(feat[self.crop_start(index, len(feat), self.target_length):], self.target_length)

    def collater(self, samples: list[dict]) -> dict:
        samples, n_skipped, placeholder = self.usable(samples)
        if placeholder is not None:
            return placeholder
        width = samples[0]["source"].shape[1]
        source = torch.zeros(len(samples), self.target_length, width)
        padding_mask = torch.zeros(len(samples), self.target_length, dtype=torch.bool)
        target = torch.zeros(len(samples), self.num_classes)
        for i, s in enumerate(samples):
            source[i], valid = self.fix_clip(s["source"], s["id"])
            padding_mask[i, valid:] = True
            target[i, s["labels"]] = 1.0
        return {
            "id": torch.LongTensor([s["id"] for s in samples]),
            # None when no clip is padded (checked here, on the host, not in the step), so
            # such batches take attention's unmasked kernels, as in pretraining
            "net_input": {"source": source, "padding_mask": padding_mask if padding_mask.any() else None},
            "target": target,
            "n_skipped": n_skipped,
        }

    def num_tokens(self, index: int) -> int:
        return self.target_length

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return np.full(len(indices), self.target_length, dtype=np.int64)

    def size(self, index: int) -> int:
        return self.target_length

    def ordered_indices(self) -> np.ndarray:
        if self.weights is not None:
            return weighted_indices(self.weights, len(self), self.seed, self.epoch)
        if self.shuffle:
            # A new permutation every epoch (fairseq only shuffles whole batches).
            return np.random.default_rng([self.seed, self.epoch]).permutation(len(self))
        return np.arange(len(self))


def label_paths(data: str, split: str) -> tuple[str, str, str]:
    """``{split}.tsv``, ``{split}.lbl`` and ``label_descriptors.csv`` of a data folder."""
    return (os.path.join(data, f"{split}.tsv"), os.path.join(data, f"{split}.lbl"),
            os.path.join(data, "label_descriptors.csv"))
