"""The ``mae_ast_pretraining`` task."""

from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import register_task
from omegaconf import MISSING

from ..data import MAE_AST_Dataset
from ..data.features import FeatureSpec
from ..data.mae_ast_dataset import features_from_waveforms
from ..models.masking import MASK_TYPES
from .audio_task import MAE_AST_Audio_Task
from .run_checks import check_pretraining_resume

MASK_TYPE_CHOICES = ChoiceEnum(list(MASK_TYPES))


@dataclass
class MAE_AST_Pretraining_Config(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "folder holding {train,valid,test}.tsv manifests"})
    sample_rate: int = field(default=16_000, metadata={"help": "audio is resampled to this rate"})
    normalize: bool = field(default=False, metadata={"help": "unused (the original ignored it for fbank)"})
    enable_padding: bool = field(default=False, metadata={"help": "unused (as in the original)"})
    max_keep_size: Optional[int] = field(default=None, metadata={"help": "skip clips longer than this (samples)"})
    max_sample_size: Optional[int] = field(default=None, metadata={
        "help": "cap on a clip's size for batching (samples), also a frame cap when cropping"})
    min_sample_size: Optional[int] = field(default=None, metadata={"help": "skip clips shorter than this (samples)"})
    random_crop: Optional[bool] = field(default=True, metadata={"help": "crop at a random offset (else from the start)"})
    pad_audio: Optional[bool] = field(default=False, metadata={"help": "pad to the longest clip instead of cropping"})
    # The original's default was "wav", which its model never accepted; its yaml set fbank.
    feature_type: Optional[str] = field(default="fbank", metadata={
        "help": "input features: fbank (wav, spectrogram, mfcc are not supported)"})
    feature_rate: Optional[int] = field(default=100, metadata={"help": "feature frames per second"})
    feature_dim: Optional[int] = field(default=100, metadata={"help": "mel bins (128 for MAE-AST)"})
    deltas: Optional[bool] = field(default=True, metadata={"help": "append deltas and delta-deltas to the fbank"})
    mask_spans: Optional[bool] = field(default=False, metadata={"help": "unused (as in the original)"})
    fbank_cache: Optional[str] = field(default=None, metadata={
        "help": "folder written by mae-ast-cache: read precomputed fbank instead of audio"})
    features_on_device: bool = field(default=False, metadata={
        "help": "dataloader workers only decode; resampling and fbank run on the training device, "
                "batched (the same features, cropped the same way)"})
    mask_type: MASK_TYPE_CHOICES = field(default="random_mask", metadata={
        "help": "retain_spans (frames; wav2vec2 spans, RETAINED), random_mask, "
                "random_mask_batched (one mask per batch), chunk_mask (SSAST chunks, one per batch)"})


@register_task("mae_ast_pretraining", dataclass=MAE_AST_Pretraining_Config)
class MAE_AST_Pretraining_Task(MAE_AST_Audio_Task):
    cfg: MAE_AST_Pretraining_Config

    def __init__(self, cfg: MAE_AST_Pretraining_Config) -> None:
        super().__init__(cfg)
        if cfg.feature_type != "fbank":
            raise ValueError(f"task.feature_type={cfg.feature_type!r} is not supported: MAE-AST trains on "
                             "Kaldi fbank (set task.feature_type=fbank, as config/pretrain/mae_ast.yaml does)")
        if cfg.feature_rate != 100:
            raise ValueError("task.feature_rate must be 100: the fbank uses a 10 ms shift")
        self.feature_spec = FeatureSpec.from_task_cfg(cfg)

    def load_dataset(self, split: str, **kwargs) -> None:
        on_device = bool(getattr(self.cfg, "features_on_device", False))
        dataset = MAE_AST_Dataset(
            self.split_files(split)[0],
            sample_rate=self.cfg.sample_rate,
            max_keep_sample_size=self.cfg.max_keep_size,
            min_keep_sample_size=self.cfg.min_sample_size,
            max_sample_size=self.cfg.max_sample_size,
            pad_audio=self.cfg.pad_audio,
            random_crop=self.cfg.random_crop,
            feature_spec=self.feature_spec,
            min_frames=self.min_frames,
        )
        if on_device and getattr(self.cfg, "fbank_cache", None):
            raise ValueError("task.fbank_cache and task.features_on_device exclude each other: "
                             "the cache already holds the features; drop one of them")
        self.attach_cache(dataset, split)
        dataset.decode_only = on_device
        self.datasets[split] = dataset

    def check_run(self, model, root) -> None:
        if root is not None:
            check_pretraining_resume(root, model, self.record_provenance(root, "pretraining"))

    def device_features(self, sample: dict, model) -> dict:
        """A ``features_on_device`` batch (waveforms) becomes the usual one, features computed
        where its tensors are, in the model's dtype under fp16/bf16 (as fairseq casts)."""
        if "waveforms" not in sample:
            return sample
        dtype = next(model.parameters()).dtype
        return features_from_waveforms(sample, self.feature_spec, dtype if dtype != torch.float32 else None)

    def valid_step(self, sample, model, criterion):
        return super().valid_step(self.device_features(sample, model), model, criterion)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        sample = self.device_features(sample, model)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
