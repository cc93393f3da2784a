"""The pretraining dataset: manifest -> audio -> Kaldi fbank -> cropped batches.

Batching matches the original: ``num_tokens`` counts audio samples (the manifest length,
capped at ``max_sample_size``), so ``dataset.max_tokens`` means what it meant there;
indices are ordered by length, longest first, ties random; the collater crops every
clip to the shortest in the batch (random crop when ``random_crop``), so pretraining
batches carry no padding.

Bad files are skipped, never fatal: each is named once in the log with its reason,
and every batch reports how many of its clips were skipped (``n_skipped``), which the
criterion logs as ``skipped_clips``.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import torch
import torch.nn.functional as F

try:
    from fairseq.data import FairseqDataset
except ImportError:  # feature extraction without fairseq: a plain torch dataset
    from torch.utils.data import Dataset as FairseqDataset

from .audio_io import AudioError, read_audio
from .fbank import fbank
from .manifest import read_manifest

logger = logging.getLogger(__name__)


def compute_deltas(feat: torch.Tensor, n: int = 2) -> torch.Tensor:
    """Regression deltas along time of ``(frames, dims)`` features, edges replicated
    (torchaudio's ``compute_deltas`` with its default window of 5)."""
    padded = F.pad(feat.T.unsqueeze(0), (n, n), mode="replicate")
    kernel = torch.arange(-n, n + 1, dtype=feat.dtype).repeat(feat.shape[1], 1, 1)
    denom = n * (n + 1) * (2 * n + 1) / 3
    return (F.conv1d(padded, kernel, groups=feat.shape[1]) / denom).squeeze(0).T


class MAE_AST_Dataset(FairseqDataset):
    def __init__(
        self,
        manifest_path: str,
        sample_rate: int = 16000,
        max_keep_sample_size: int | None = None,
        min_keep_sample_size: int | None = None,
        max_sample_size: int | None = None,
        shuffle: bool = True,
        pad_audio: bool = False,
        random_crop: bool = True,
        feature_dim: int = 128,
        deltas: bool = False,
    ) -> None:
        manifest = read_manifest(manifest_path, min_keep_sample_size, max_keep_sample_size)
        self.manifest_path = manifest_path
        self.min_keep, self.max_keep = min_keep_sample_size, max_keep_sample_size
        self.cache = None  # an FbankCache (use_cache) replaces decoding and fbank
        self.paths, self.lines = manifest.paths, manifest.lines
        self.sizes = np.asarray(manifest.sizes, dtype=np.int64)
        self.sample_rate = sample_rate
        self.max_sample_size = max_sample_size if max_sample_size is not None else sys.maxsize
        self.shuffle = shuffle
        self.pad_audio = pad_audio
        self.random_crop = random_crop
        self.feature_dim = feature_dim
        self.deltas = deltas
        # Clips with fewer frames than one patch cannot make a token; the task sets this
        # to the model's kernel time once the model is built.
        self.min_frames = 1
        self.epoch = 1
        self._reported: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        # Crops depend on the epoch. A reused iterator keeps its persistent dataloader
        # workers, which never see set_epoch: crops would repeat every epoch, and a
        # resumed run (fresh workers) would crop differently from an uninterrupted one.
        return False

    def __len__(self) -> int:
        return len(self.sizes)

    def _skip(self, index: int, reason: str) -> dict:
        if index not in self._reported:  # name each bad file once per process
            self._reported.add(index)
            logger.warning(
                f"skipping {self.paths[index]} ({self.manifest_path}:{self.lines[index]}): "
                f"{reason}"
            )
        return {"id": index, "source": None}

    @property
    def feature_width(self) -> int:
        """Columns per frame: the mel bins, tripled when deltas are appended."""
        return self.feature_dim * (3 if self.deltas else 1)

    def use_cache(self, cache_dir: str, split: str) -> None:
        from .fbank_cache import FbankCache

        self.cache = FbankCache(cache_dir, split, self)
        logger.info(f"{self.manifest_path}: reading features from the cache in {cache_dir}")

    def get_features(self, index: int) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[index]
        wav = read_audio(self.paths[index], self.sample_rate)
        try:
            feat = fbank(wav, num_mel_bins=self.feature_dim, sample_rate=self.sample_rate)
        except ValueError as err:
            raise AudioError(self.paths[index], str(err)) from err
        if self.deltas:
            d1 = compute_deltas(feat)
            feat = torch.cat([feat, d1, compute_deltas(d1)], dim=1)
        return feat

    def __getitem__(self, index: int) -> dict:
        try:
            feat = self.get_features(index)
        except AudioError as err:
            return self._skip(index, err.reason)
        if len(feat) < self.min_frames:
            return self._skip(index, f"{len(feat)} frames is shorter than one patch ({self.min_frames})")
        return {"id": index, "source": feat}

    def crop_to_max_size(self, feat: torch.Tensor, target: int, index: int) -> torch.Tensor:
        diff = len(feat) - target
        if diff <= 0:
            return feat
        # The offset depends only on (epoch, clip, length): the same in any dataloader
        # worker and after a resume, new every epoch. (The original drew from the global
        # numpy state, which forked workers share and a restart resets.)
        rng = np.random.default_rng((self.epoch, index, target))
        start = int(rng.integers(0, diff + 1)) if self.random_crop else 0
        return feat[start : start + target]

    def collater(self, samples: list[dict]) -> dict:
        n_skipped = sum(s["source"] is None for s in samples)
        samples = [s for s in samples if s["source"] is not None]
        if not samples:
            return {}
        feats = [s["source"] for s in samples]
        lengths = [len(f) for f in feats]
        # As in the original, max_sample_size (samples) caps a length in frames: with the
        # seed's 250000 it never binds on 10 s clips (1000 frames).
        target = min(max(lengths) if self.pad_audio else min(lengths), self.max_sample_size)
        source = feats[0].new_zeros(len(feats), target, feats[0].shape[1])
        padding_mask = torch.zeros(len(feats), target, dtype=torch.bool)
        for i, (sample, feat) in enumerate(zip(samples, feats)):
            feat = self.crop_to_max_size(feat, target, sample["id"])
            source[i, : len(feat)] = feat
            padding_mask[i, len(feat) :] = True
        return {
            "id": torch.LongTensor([s["id"] for s in samples]),
            "net_input": {"source": source, "padding_mask": padding_mask},
            "n_skipped": n_skipped,
        }

    def num_tokens(self, index: int) -> int:
        return self.size(index)

    def size(self, index: int) -> int:
        return int(self.sizes[index]) if self.pad_audio else int(min(self.sizes[index], self.max_sample_size))

    def ordered_indices(self) -> np.ndarray:
        order = [np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))]
        order.append(self.sizes)
        return np.lexsort(order)[::-1]
