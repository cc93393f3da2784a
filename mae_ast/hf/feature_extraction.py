"""MAE-AST feature extractor: waveforms -> the package's Kaldi fbank (``data/fbank.py``, shipped
beside this file), so ``input_values`` equal ``extract_layers``'. transformers'
``ASTFeatureExtractor`` is not used: its fbank differs from Kaldi's by up to 4.5 per bin.

Padding uses ``padding_value``, the model's input mean, which its BatchNorm maps to 0 (a
loud value would be 0.0 in log-mel space). A clip shorter than one patch (``min_frames``)
is padded to one, as ``mae_ast.hear`` does, and those frames count as the clip's own."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import logging

from ..data.fbank import check_clip, fbank, with_deltas

logger = logging.get_logger(__name__)

PADDING = ("longest", "max_length", "do_not_pad")


class MAEASTFeatureExtractor(SequenceFeatureExtractor):
    model_input_names = ["input_values", "attention_mask"]

    def __init__(self, sampling_rate: int = 16000, num_mel_bins: int = 128, deltas: bool = False,
                 min_frames: int = 1, target_length: int | None = None, padding_value: float = 0.0,
                 return_attention_mask: bool = True, **kwargs: Any) -> None:
        kwargs.pop("feature_size", None)  # the width follows from the bins and deltas
        width = int(num_mel_bins) * (3 if deltas else 1)
        super().__init__(feature_size=width, sampling_rate=int(sampling_rate), padding_value=float(padding_value),
                         return_attention_mask=return_attention_mask, **kwargs)
        self.num_mel_bins = int(num_mel_bins)
        self.deltas = bool(deltas)
        self.min_frames = int(min_frames)  # one patch along time
        self.target_length = target_length

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(frames, columns)`` features of one mono waveform, at least ``min_frames``."""
        window = int(self.sampling_rate * 0.025)  # one 25 ms frame
        if len(waveform) < window:
            waveform = F.pad(waveform, (0, window - len(waveform)))
        feat = fbank(waveform, num_mel_bins=self.num_mel_bins, sample_rate=self.sampling_rate)
        if self.deltas:
            feat = with_deltas(feat)
        if len(feat) < self.min_frames:
            feat = torch.cat([feat, feat.new_full((self.min_frames - len(feat), feat.shape[1]), self.padding_value)])
        return feat

    def __call__(self, raw_speech: Any, sampling_rate: int | None = None, padding: bool | str | None = None,
                 max_length: int | None = None, truncation: bool | None = None,
                 pad_to_multiple_of: int | None = None, return_attention_mask: bool | None = None,
                 return_tensors: str | None = None) -> BatchFeature:
        """One clip (1-D array, tensor or list of floats) or a batch (a list of them, or a
        ``(B, samples)`` array), mono in [-1, 1] -> ``input_values`` ``(B, frames, columns)`` and
        ``attention_mask`` (1 = the clip's frames). Default padding: a classifier's clips are
        cropped from their start or padded to ``target_length``, an encoder's to the longest."""
        if sampling_rate is None:
            logger.warning(f"It is strongly recommended to pass the `sampling_rate` argument to "
                           f"`{type(self).__name__}()` ({self.sampling_rate} Hz). Failing to do so can result in "
                           "silent errors that might be hard to debug.")
        elif sampling_rate != self.sampling_rate:
            raise ValueError(f"this model takes audio at {self.sampling_rate} Hz, got {sampling_rate} Hz: "
                             "resample first")
        padding, max_length, truncation = self.padding_strategy(padding, max_length, truncation)
        feats = [self.features(wav) for wav in self.waveforms(raw_speech)]
        if truncation:
            feats = [f[:max_length] for f in feats]
        lengths = [len(f) for f in feats]
        if padding == "do_not_pad":
            if return_tensors and len(set(lengths)) > 1:
                raise ValueError(f"clips of {sorted(set(lengths))} frames cannot be stacked into a tensor "
                                 "without padding: pass padding=True (or leave it at its default)")
            target = None
        else:
            target = max(lengths) if padding == "longest" else max_length
            too_long = [i for i, n in enumerate(lengths) if n > target]
            if too_long:
                raise ValueError(f"clip {too_long[0]} has {lengths[too_long[0]]} frames, more than max_length="
                                 f"{target}: pass truncation=True to crop it")
            if pad_to_multiple_of:
                target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        values = [f.numpy() if target is None else
                  np.concatenate([f.numpy(), np.full((target - len(f), f.shape[1]), self.padding_value, np.float32)])
                  for f in feats]
        out = {"input_values": values if target is None else np.stack(values)}
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            masks = [(np.arange(len(v)) < n).astype(np.int64) for v, n in zip(values, lengths)]
            out["attention_mask"] = masks if target is None else np.stack(masks)
        return BatchFeature(out, tensor_type=return_tensors)

    def padding_strategy(self, padding: bool | str | None, max_length: int | None,
                         truncation: bool | None) -> tuple[str, int | None, bool]:
        """(padding, max_length, truncation) with the defaults filled in."""
        if max_length is None:
            max_length = self.target_length
        if padding is None:
            padding = "max_length" if self.target_length else "longest"
        padding = {True: "longest", False: "do_not_pad"}.get(padding, padding)
        if padding not in PADDING:
            raise ValueError(f"padding={padding!r}: expected one of {PADDING}, True or False")
        if truncation is None:
            truncation = self.target_length is not None and max_length is not None
        if (padding == "max_length" or truncation) and max_length is None:
            raise ValueError(f"padding={padding!r}, truncation={truncation}: pass max_length (frames)")
        return padding, max_length, bool(truncation)

    def waveforms(self, raw_speech: Any) -> list[torch.Tensor]:
        """The clips of a call, each as a float32 tensor."""
        if isinstance(raw_speech, (np.ndarray, torch.Tensor)):
            if raw_speech.ndim not in (1, 2):
                raise ValueError(f"expected one clip (samples,) or a batch (clips, samples), got shape "
                                 f"{tuple(raw_speech.shape)}")
            clips = [raw_speech] if raw_speech.ndim == 1 else list(raw_speech)
        elif isinstance(raw_speech, (list, tuple)) and raw_speech:
            # transformers' convention: a list of numbers is one clip, a list of arrays a batch.
            one = isinstance(raw_speech[0], (int, float, np.number))
            clips = [raw_speech] if one else list(raw_speech)
        else:
            raise ValueError(f"expected a waveform or a non-empty list of waveforms, got {type(raw_speech).__name__}")
        return [self.waveform(c, i) for i, c in enumerate(clips)]

    @staticmethod
    def waveform(clip: Any, index: int) -> torch.Tensor:
        """One clip under the package's input contract (``check_clip``), as float32."""
        if isinstance(clip, np.ndarray):
            clip = torch.from_numpy(np.array(clip))  # a copy: arrays read from files are often read-only
        elif not isinstance(clip, torch.Tensor):
            clip = torch.from_numpy(np.asarray(clip, dtype=np.float32))  # a list of numbers has no dtype
        return check_clip(clip.detach().cpu(), f"waveform {index}")
