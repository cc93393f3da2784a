"""The pretraining dataset: manifest -> audio -> Kaldi fbank -> cropped batches.

Batching matches the original: ``num_tokens`` counts audio samples (capped at
``max_sample_size``), indices run longest first (ties random), and the collater crops
every clip to the batch's shortest, so batches carry no padding. Bad files are skipped
(README, "Bad input policy"), counted per batch (``n_skipped``); a batch of only bad clips
is a placeholder (no ``net_input``) that the criterion turns into a zero loss.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import torch

try:
    from fairseq.data import FairseqDataset
except ImportError:  # feature extraction without fairseq: a plain torch dataset
    from torch.utils.data import Dataset as FairseqDataset

from .audio_io import AudioError, decode_audio
from .features import FeatureSpec, clip_features, short_of_one_patch
from .manifest import ManifestError, read_manifest

logger = logging.getLogger(__name__)


class MAE_AST_Dataset(FairseqDataset):
    def __init__(
        self,
        manifest_path: str,
        sample_rate: int | None = None,
        max_keep_sample_size: int | None = None,
        min_keep_sample_size: int | None = None,
        max_sample_size: int | None = None,
        shuffle: bool = True,
        pad_audio: bool = False,
        random_crop: bool = True,
        feature_spec: FeatureSpec | None = None,
        min_frames: int = 1,
        seed: int | None = None,
    ) -> None:
        manifest = read_manifest(manifest_path, min_keep_sample_size, max_keep_sample_size)
        if not len(manifest):
            raise ManifestError(
                f"{manifest_path}: no clips to use ({manifest.n_short} shorter than min_sample_size="
                f"{min_keep_sample_size}, {manifest.n_long} longer than max_keep_size={max_keep_sample_size}); "
                "add clips to this split, or lower task.min_sample_size"
            )
        self.manifest_path = manifest_path
        self.min_keep, self.max_keep = min_keep_sample_size, max_keep_sample_size
        self.cache = None  # an FbankCache (use_cache) replaces decoding and fbank
        # Packed (see ``manifest``): forked dataloader workers share them without copying.
        self.paths, self.lines, self.entries = manifest.paths, manifest.lines, manifest.entries
        self.sizes = manifest.sizes  # samples at each file's own rate; never written into
        if feature_spec is not None and sample_rate not in (None, feature_spec.sample_rate):
            raise ValueError(f"sample_rate={sample_rate} contradicts the feature spec ({feature_spec.describe()})")
        self.feature_spec = feature_spec or FeatureSpec(sample_rate=sample_rate or 16000)
        self.max_sample_size = max_sample_size if max_sample_size is not None else sys.maxsize
        self.shuffle = shuffle
        self.pad_audio = pad_audio
        self.random_crop = random_crop
        self.seed = seed
        self.min_frames = min_frames  # one patch in time; the task updates it once the model exists
        self.epoch = 1
        self._reported: set[int] = set()
        self.decode_only = False  # task.features_on_device: items are waveforms at their own rate
        self.keep_silence = False  # evaluation keeps silent clips

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        # Crops depend on the epoch, which a reused iterator's persistent workers never see:
        # crops would repeat, and a resumed run (fresh workers) would crop differently.
        return False

    def __len__(self) -> int:
        return len(self.sizes)

    def _skip(self, index: int, reason: str) -> dict:
        if index not in self._reported:  # name each bad file once per process
            self._reported.add(index)
            logger.warning(f"skipping {self.paths[index]} ({self.manifest_path}:{self.lines[index]}): {reason}")
        return {"id": index, "source": None}

    def use_cache(self, cache_dir: str, split: str) -> None:
        from .fbank_cache import FbankCache

        self.cache = FbankCache(cache_dir, split, self)
        logger.info(f"{self.manifest_path}: reading features from the cache in {cache_dir}")

    def get_features(self, index: int) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[index]
        return clip_features(self.paths[index], self.feature_spec, expected_samples=int(self.sizes[index]),
                             allow_silence=self.keep_silence)

    def __getitem__(self, index: int) -> dict:
        """The clip's features, or with ``decode_only`` its waveform at the file's rate."""
        try:
            if self.decode_only:
                wav, rate = decode_audio(self.paths[index], int(self.sizes[index]), self.keep_silence)
                frames = self.feature_spec.frames_at_rate(len(wav), rate)
                item = {"source": wav, "rate": rate, "frames": frames}
                # The features path's reasons: below one fbank window, else short of one patch.
                reason = (self.feature_spec.unusable(len(wav), rate, 1) if frames == 0
                          else short_of_one_patch(frames, self.min_frames))
            else:
                item = {"source": self.get_features(index)}
                reason = short_of_one_patch(len(item["source"]), self.min_frames)
        except AudioError as err:
            reason = err.reason
        return self._skip(index, reason) if reason else {"id": index, **item}

    def crop_start(self, index: int, length: int, target: int) -> int:
        """First frame of the crop of ``target`` frames out of ``length``, for pretraining and
        fine-tuning: keyed by (seed, epoch, clip, target), so the same in any worker and after
        a resume, new every epoch. Pretraining has no seed setting: keyed without it."""
        diff = length - target
        if diff <= 0 or not self.random_crop:
            return 0
        key = (self.epoch, index, target) if self.seed is None else (self.seed, self.epoch, index, target)
        return int(np.random.default_rng(key).integers(0, diff + 1))

    @staticmethod
    def usable(samples: list[dict]) -> tuple[list[dict], int, dict | None]:
        """The samples that hold features, how many were skipped, and the batch to return when
        none is left: not {}, or fairseq would swap in its dummy batch and drop the count."""
        n_skipped = sum(s["source"] is None for s in samples)
        samples = [s for s in samples if s["source"] is not None]
        if samples:
            return samples, n_skipped, None
        return samples, n_skipped, {"id": torch.zeros(0, dtype=torch.long), "n_skipped": n_skipped} if n_skipped else {}

    def target_frames(self, lengths: list[int]) -> int:
        """Frames every clip of the batch is cropped or padded to."""
        # As in the original, max_sample_size (samples) caps a length in frames: with the
        # seed's 250000 it never binds on 10 s clips (1000 frames).
        return min(max(lengths) if self.pad_audio else min(lengths), self.max_sample_size)

    def collater(self, samples: list[dict]) -> dict:
        samples, n_skipped, placeholder = self.usable(samples)
        if placeholder is not None:
            return placeholder
        if self.decode_only:
            return self.collate_waveforms(samples, n_skipped)
        feats = [s["source"] for s in samples]
        lengths = [len(f) for f in feats]
        target = self.target_frames(lengths)
        starts = [self.crop_start(s["id"], n, target) for s, n in zip(samples, lengths)]
        source, padding_mask = crop_batch(feats, lengths, starts, target)
        return {
            "id": torch.LongTensor([s["id"] for s in samples]),
            "net_input": {"source": source, "padding_mask": padding_mask},
            "n_skipped": n_skipped,
        }

    def collate_waveforms(self, samples: list[dict], n_skipped: int) -> dict:
        """A batch of ``decode_only`` items: the waveforms zero-padded to the longest, and
        the crops ``collater`` would cut, planned on the host for ``features_from_waveforms``."""
        frames = [s["frames"] for s in samples]
        target = self.target_frames(frames)
        wav = torch.nn.utils.rnn.pad_sequence([s["source"] for s in samples], batch_first=True)
        return {
            "id": torch.LongTensor([s["id"] for s in samples]),
            "waveforms": {
                # Stored as int32 bits: fairseq's fp16/bf16 mode halves every float tensor
                # of a batch, which would round the audio before its fbank.
                "wav": wav.view(torch.int32),
                "lengths": [len(s["source"]) for s in samples],
                "rates": [s["rate"] for s in samples],
                "starts": [self.crop_start(s["id"], f, target) for s, f in zip(samples, frames)],
                "frames": target,
            },
            "n_skipped": n_skipped,
        }

    def num_tokens(self, index: int) -> int:
        return self.size(index)

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        """``num_tokens`` of many clips at once (no Python call per clip in fairseq's batching)."""
        sizes = self.sizes[np.asarray(indices, dtype=np.int64)]
        return sizes if self.pad_audio else np.minimum(sizes, self.max_sample_size)

    def size(self, index: int) -> int:
        return int(self.sizes[index]) if self.pad_audio else int(min(self.sizes[index], self.max_sample_size))

    def batch_by_size(self, indices: np.ndarray, max_tokens=None, max_sentences=None,
                      required_batch_size_multiple: int = 1) -> list:
        """fairseq's batching, plus a count of the clips it leaves out (a last batch under
        ``required_batch_size_multiple``: the same shortest clips every epoch)."""
        batches = super().batch_by_size(indices, max_tokens, max_sentences, required_batch_size_multiple)
        kept = sum(len(b) for b in batches)
        if not batches:
            raise ManifestError(
                f"{self.manifest_path}: its {len(indices)} clips make no full batch (fairseq drops a last batch "
                f"of fewer than dataset.required_batch_size_multiple={required_batch_size_multiple} clips); "
                "add clips to this split or set dataset.required_batch_size_multiple=1"
            )
        if kept < len(indices):
            # sorted, distinct clips in no batch: np.setdiff1d's answer, linear (it took 2.4 s at 500 k clips)
            batched = np.zeros(len(self), dtype=bool)
            batched[np.concatenate(batches)] = True
            indices = np.asarray(indices, dtype=np.int64)
            left = np.unique(indices[~batched[indices]])
            logger.warning(
                f"{self.manifest_path}: epoch {self.epoch}: batching leaves out {len(left)} of {len(indices)} clips "
                f"(last batch smaller than dataset.required_batch_size_multiple={required_batch_size_multiple}), "
                f"e.g. {[self.paths[i] for i in left[:3]]}; set dataset.required_batch_size_multiple=1 to keep them"
            )
        return batches

    def ordered_indices(self) -> np.ndarray:
        ties = np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))
        return np.lexsort([ties, self.sizes])[::-1]


def crop_batch(feats, frames: list[int], starts: list[int], target: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Clip ``i`` (``frames[i]`` long) from ``starts[i]`` into a zero-padded ``(B, target, width)``
    batch, and its padding mask, None when nothing is padded (attention then takes its
    unmasked kernels). Only host integers steer it: nothing waits for the device."""
    source = feats[0].new_zeros(len(feats), target, feats[0].shape[-1])
    padding_mask = None
    for i, (n, start) in enumerate(zip(frames, starts)):
        valid = min(n - start, target)
        source[i, :valid] = feats[i][start : start + valid]
        if valid < target:
            if padding_mask is None:
                padding_mask = torch.zeros(source.shape[:2], dtype=torch.bool, device=source.device)
            padding_mask[i, valid:] = True
    return source, padding_mask


def features_from_waveforms(sample: dict, spec: FeatureSpec, dtype: torch.dtype | None = None) -> dict:
    """The batch ``collater`` would have built, from a ``collate_waveforms`` batch on the
    training device."""
    w = sample["waveforms"]
    feats = spec.compute_batch(w["wav"].view(torch.float32), w["lengths"], w["rates"])
    frames = [spec.frames_at_rate(n, rate) for n, rate in zip(w["lengths"], w["rates"])]
    source, padding_mask = crop_batch(feats, frames, w["starts"], w["frames"])
    out = {k: v for k, v in sample.items() if k != "waveforms"}
    out["net_input"] = {"source": source if dtype is None else source.to(dtype), "padding_mask": padding_mask}
    return out
