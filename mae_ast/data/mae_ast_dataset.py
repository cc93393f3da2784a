"""The pretraining dataset: manifest -> audio -> Kaldi fbank -> cropped batches.

Batching matches the original: ``num_tokens`` counts audio samples (the manifest length,
capped at ``max_sample_size``), so ``dataset.max_tokens`` means what it meant there;
indices are ordered by length, longest first, ties random; the collater crops every
clip to the shortest in the batch (random crop when ``random_crop``), so pretraining
batches carry no padding (``padding_mask`` is None then).

Bad files are skipped, never fatal: each is named once in the log with its reason,
and every batch reports how many of its clips were skipped (``n_skipped``), which the
criterion logs as ``skipped_clips``. A batch whose clips are all bad becomes a
placeholder (no ``net_input``) that the criterion turns into a zero loss, so its count
is logged too and fairseq never sees an empty batch.
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
        # Packed (see ``manifest``): forked dataloader workers read them without copying.
        self.paths, self.lines, self.entries = manifest.paths, manifest.lines, manifest.entries
        self.root = manifest.root
        self.sizes = manifest.sizes  # samples at each file's own rate; never written into
        if feature_spec is not None and sample_rate not in (None, feature_spec.sample_rate):
            raise ValueError(f"sample_rate={sample_rate} contradicts the feature spec ({feature_spec.describe()})")
        self.feature_spec = feature_spec or FeatureSpec(sample_rate=sample_rate or 16000)
        self.sample_rate = self.feature_spec.sample_rate
        self.max_sample_size = max_sample_size if max_sample_size is not None else sys.maxsize
        self.shuffle = shuffle
        self.pad_audio = pad_audio
        self.random_crop = random_crop
        self.seed = seed
        # Clips with fewer frames than one patch cannot make a token; the task passes the
        # model's kernel time (and updates it if the model is built after the dataset).
        self.min_frames = min_frames
        self.epoch = 1
        self._reported: set[int] = set()
        # With decode_only (task.features_on_device) items are waveforms at their own
        # rate and batches carry them; the task computes features on the device.
        self.decode_only = False
        # Digitally silent clips are skipped (counted) unless kept: evaluation keeps them.
        self.keep_silence = False

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
        return self.feature_spec.width

    def use_cache(self, cache_dir: str, split: str) -> None:
        from .fbank_cache import FbankCache

        self.cache = FbankCache(cache_dir, split, self)
        logger.info(f"{self.manifest_path}: reading features from the cache in {cache_dir}")

    def get_features(self, index: int) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[index]
        expected = int(self.sizes[index])
        return clip_features(self.paths[index], self.feature_spec, expected_samples=expected,
                             allow_silence=self.keep_silence)

    def __getitem__(self, index: int) -> dict:
        if self.decode_only:
            return self.get_waveform(index)
        try:
            feat = self.get_features(index)
        except AudioError as err:
            return self._skip(index, err.reason)
        short = short_of_one_patch(len(feat), self.min_frames)
        if short:
            return self._skip(index, short)
        return {"id": index, "source": feat}

    def get_waveform(self, index: int) -> dict:
        """The item of ``decode_only``: the checked waveform at the file's rate, with the
        same skips (and reasons) as the features path."""
        expected = int(self.sizes[index])
        try:
            wav, rate = decode_audio(self.paths[index], expected, self.keep_silence)
        except AudioError as err:
            return self._skip(index, err.reason)
        frames = self.feature_spec.frames_at_rate(len(wav), rate)
        if frames == 0:
            return self._skip(index, f"{len(wav)} samples at {rate} Hz is shorter than one fbank window")
        short = short_of_one_patch(frames, self.min_frames)
        if short:
            return self._skip(index, short)
        return {"id": index, "source": wav, "rate": rate, "frames": frames}

    def crop_start(self, index: int, length: int, target: int) -> int:
        """First frame of the crop of ``target`` frames out of ``length``: the one crop rule
        of pretraining and fine-tuning. The offset depends only on (seed, epoch, clip,
        target): the same in any dataloader worker and after a resume, new every epoch.
        (The original drew from the global numpy state, which forked workers share and a
        restart resets.) Pretraining passes no seed (its task has no seed setting), so its
        crops stay keyed by (epoch, clip, target), as this code has always cropped them."""
        diff = length - target
        if diff <= 0 or not self.random_crop:
            return 0
        key = (self.epoch, index, target) if self.seed is None else (self.seed, self.epoch, index, target)
        return int(np.random.default_rng(key).integers(0, diff + 1))

    def crop_to_max_size(self, feat: torch.Tensor, target: int, index: int) -> torch.Tensor:
        start = self.crop_start(index, len(feat), target)
        return feat[start : start + target]

    @staticmethod
    def usable(samples: list[dict]) -> tuple[list[dict], int, dict | None]:
        """The samples that hold features, how many were skipped, and the batch to return
        when none is left: not {}, or fairseq would swap in its dummy batch and drop the
        count (or fail with "Invalid dummy batch" if it is the first one)."""
        n_skipped = sum(s["source"] is None for s in samples)
        samples = [s for s in samples if s["source"] is not None]
        placeholder = None
        if not samples:
            placeholder = {"id": torch.zeros(0, dtype=torch.long), "n_skipped": n_skipped} if n_skipped else {}
        return samples, n_skipped, placeholder

    def target_frames(self, lengths: list[int]) -> int:
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
        source = feats[0].new_zeros(len(feats), target, feats[0].shape[1])
        padding_mask = torch.zeros(len(feats), target, dtype=torch.bool)
        for i, (sample, feat) in enumerate(zip(samples, feats)):
            feat = self.crop_to_max_size(feat, target, sample["id"])
            source[i, : len(feat)] = feat
            padding_mask[i, len(feat) :] = True
        if not any(length < target for length in lengths):
            # Nothing padded (always so when cropping): the model then needs no mask and
            # never has to look at one on the device to find that out.
            padding_mask = None
        return {
            "id": torch.LongTensor([s["id"] for s in samples]),
            "net_input": {"source": source, "padding_mask": padding_mask},
            "n_skipped": n_skipped,
        }

    def collate_waveforms(self, samples: list[dict], n_skipped: int) -> dict:
        """A batch of ``decode_only`` items: the waveforms zero-padded to the longest,
        and, planned on the host, everything the device needs to cut the same crops as
        ``collater`` (``features_from_waveforms`` does it): lengths, rates, each clip's
        first frame and the batch's frame count."""
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
        """``num_tokens`` of many clips at once: fairseq's batching then makes no Python
        call per clip."""
        sizes = self.sizes[np.asarray(indices, dtype=np.int64)]
        return sizes if self.pad_audio else np.minimum(sizes, self.max_sample_size)

    def size(self, index: int) -> int:
        return int(self.sizes[index]) if self.pad_audio else int(min(self.sizes[index], self.max_sample_size))

    def batch_by_size(self, indices: np.ndarray, max_tokens=None, max_sentences=None,
                      required_batch_size_multiple: int = 1) -> list:
        """fairseq's batching, plus a count of the clips it leaves out: it drops a last
        batch smaller than ``required_batch_size_multiple``, and with clips sorted by
        length those are the same shortest clips every epoch."""
        batches = super().batch_by_size(indices, max_tokens, max_sentences, required_batch_size_multiple)
        kept = sum(len(b) for b in batches)
        if not batches:
            raise ManifestError(
                f"{self.manifest_path}: its {len(indices)} clips make no full batch (fairseq drops a last batch "
                f"of fewer than dataset.required_batch_size_multiple={required_batch_size_multiple} clips); "
                "add clips to this split or set dataset.required_batch_size_multiple=1"
            )
        if kept < len(indices):
            # sorted, distinct clips in no batch (np.setdiff1d's answer; a flag per clip is
            # linear, where setdiff1d's two np.unique calls took 2.4 s CPU at 500 k clips)
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
        order = [np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))]
        order.append(self.sizes)
        return np.lexsort(order)[::-1]


def features_from_waveforms(sample: dict, spec: FeatureSpec, dtype: torch.dtype | None = None) -> dict:
    """The batch ``collater`` would have built, from a ``collate_waveforms`` batch whose
    tensors are on the training device: features computed there, cropped as planned.
    Only host-known integers steer it, so nothing waits for the device."""
    w = sample["waveforms"]
    feats = spec.compute_batch(w["wav"].view(torch.float32), w["lengths"], w["rates"])
    target = w["frames"]
    source = feats.new_zeros(feats.shape[0], target, feats.shape[2])
    padding_mask = None
    for i, (n, rate, start) in enumerate(zip(w["lengths"], w["rates"], w["starts"])):
        valid = min(spec.frames_at_rate(n, rate) - start, target)
        source[i, :valid] = feats[i, start : start + valid]
        if valid < target:
            if padding_mask is None:
                padding_mask = torch.zeros(source.shape[:2], dtype=torch.bool, device=source.device)
            padding_mask[i, valid:] = True
    out = {k: v for k, v in sample.items() if k != "waveforms"}
    out["net_input"] = {"source": source if dtype is None else source.to(dtype), "padding_mask": padding_mask}
    return out
