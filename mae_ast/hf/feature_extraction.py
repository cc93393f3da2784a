"""``MAEASTFeatureExtractor``: 16 kHz waveforms -> the checkpoint's own features.

The package's ``FeatureSpec`` (Kaldi fbank with the povey window, deltas if the
checkpoint was trained with them) and its waveform contract (``as_waveform``): the same
numbers as ``mae_ast.load(ckpt).extract_layers``. transformers' ``ASTFeatureExtractor``
is not used: its fbank differs from Kaldi's by up to 4.5 per bin. For a classifier,
clips are cropped from the start or padded to its ``target_length`` frames, as
``load_classifier(...).scores`` does."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor

from ..data.augment import pad_or_crop
from ..data.features import FeatureSpec, as_waveform


class MAEASTFeatureExtractor(SequenceFeatureExtractor):
    model_input_names = ["input_values", "attention_mask"]

    def __init__(self, sampling_rate: int = 16000, num_mel_bins: int = 128, deltas: bool = False,
                 min_frames: int = 1, target_length: int | None = None, padding_value: float = 0.0,
                 return_attention_mask: bool = True, **kwargs: Any) -> None:
        self.spec = FeatureSpec(sample_rate=int(sampling_rate), num_mel_bins=int(num_mel_bins), deltas=bool(deltas))
        kwargs.pop("feature_size", None)  # the spec's width, always
        super().__init__(feature_size=self.spec.width, sampling_rate=int(sampling_rate), padding_value=padding_value,
                         return_attention_mask=return_attention_mask, **kwargs)
        self.num_mel_bins = int(num_mel_bins)
        self.deltas = bool(deltas)
        self.min_frames = int(min_frames)  # one patch along time
        self.target_length = target_length

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("spec", None)
        return out

    def features(self, waveform: Any, index: int = 0) -> torch.Tensor:
        wav = as_waveform(waveform, index)
        shortest = self.spec.samples_for_frames(self.min_frames)
        if len(wav) < shortest:
            raise ValueError(f"waveform {index}: {len(wav)} samples is shorter than one patch "
                             f"({shortest} samples at {self.spec.sample_rate} Hz)")
        return self.spec.compute(wav)

    def __call__(self, raw_speech: Any, sampling_rate: int | None = None, return_tensors: str | None = None,
                 **kwargs: Any) -> BatchFeature:
        """One waveform (1-D) or a batch (a list of 1-D, or 2-D ``(B, samples)``), mono in
        [-1, 1] at ``sampling_rate`` -> ``input_values`` ``(B, frames, columns)``
        zero-padded to the longest (or to ``target_length``) and ``attention_mask``."""
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(f"this model takes audio at {self.sampling_rate} Hz, got {sampling_rate} Hz: "
                             "resample first")
        if isinstance(raw_speech, (list, tuple)):
            clips = list(raw_speech)
        elif getattr(raw_speech, "ndim", 1) == 2:
            clips = list(raw_speech)
        else:
            clips = [raw_speech]
        feats = [self.features(np.asarray(c, dtype=np.float32) if not isinstance(c, torch.Tensor) else c, i)
                 for i, c in enumerate(clips)]
        length = self.target_length or max(len(f) for f in feats)
        padded, valid = zip(*(pad_or_crop(f, length, pad_value=self.padding_value) for f in feats))
        values = torch.stack(padded).numpy()
        mask = (np.arange(length)[None] < np.asarray(valid)[:, None]).astype(np.int64)
        return BatchFeature({"input_values": values, "attention_mask": mask}, tensor_type=return_tensors)
