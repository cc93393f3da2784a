"""The ``mae_ast_classification`` task: clip labels, fixed-length clips, augmentation. The
input features are the model's: fairseq builds it before loading datasets, and it tells the
task its ``FeatureSpec`` (``use_feature_spec``); explicit task settings that differ are refused.
"""


import enum
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import register_task
from omegaconf import II, MISSING, open_dict

from ..criterions.classification_criterion import reset_scores
from ..data.augment import apply_mixup, draw_mixup
from ..data.classification_dataset import ClassificationDataset, label_paths
from ..data.features import FeatureSpec
from ..data.labels import LabelError, LabelSet, read_label_descriptors
from .audio_task import MAE_AST_Audio_Task
from .. import provenance
from ..loading import Checkpoint, open_checkpoint
from .run_checks import check_metric, check_resume, check_settings, launch_path
from .validation_notes import log_validation_notes

logger = logging.getLogger(__name__)


@dataclass
class MAE_AST_Classification_Config(FairseqDataclass):
    data: str = field(default=MISSING, metadata={
        "help": "folder with {split}.tsv, {split}.lbl and label_descriptors.csv"})
    multi_label: bool = field(default=False, metadata={
        "help": "several labels per clip (AudioSet): sigmoid/BCE and mAP; else softmax/CE and accuracy"})
    target_length: int = field(default=1024, metadata={
        "help": "frames per clip (10 ms each): longer clips are cropped (random offset in training, from "
                "the start for evaluation, as SSAST), shorter ones padded and masked"})
    freqm: int = field(default=0, metadata={"help": "SpecAugment: max frequency-mask width (bins), training only"})
    timem: int = field(default=0, metadata={"help": "SpecAugment: max time-mask width (frames), training only"})
    mixup: float = field(default=0.0, metadata={"help": "probability that a training clip is mixed with another"})
    mixup_alpha: float = field(default=10.0, metadata={"help": "mixup weight ~ Beta(alpha, alpha) (SSAST: 10)"})
    noise: bool = field(default=False, metadata={
        "help": "SSAST's ESC-50/Speech Commands noise and +-10 frame time roll, training only"})
    weighted_sampling: bool = field(default=False, metadata={
        "help": "class-balanced sampling with replacement, a new draw per epoch (SSAST's AudioSet-2M)"})
    sample_rate: Optional[int] = field(default=None, metadata={
        "help": "null = the pretrained checkpoint's; a different value is refused"})
    feature_dim: Optional[int] = field(default=None, metadata={
        "help": "mel bins; null = the pretrained checkpoint's; a different value is refused"})
    deltas: Optional[bool] = field(default=None, metadata={
        "help": "fbank deltas; null = the pretrained checkpoint's; a different value is refused"})
    fbank_cache: Optional[str] = field(default=None, metadata={
        "help": "folder written by mae-ast-cache: read precomputed fbank instead of audio"})
    seed: int = field(default=II("common.seed"), metadata={
        "help": "seed of the per-epoch shuffles, crops and weighted draws"})


@register_task("mae_ast_classification", dataclass=MAE_AST_Classification_Config)
class MAE_AST_Classification_Task(MAE_AST_Audio_Task):
    cfg: MAE_AST_Classification_Config

    def __init__(self, cfg: MAE_AST_Classification_Config) -> None:
        super().__init__(cfg)
        self.feature_spec: FeatureSpec | None = None
        self.label_set = None

    @property
    def class_names(self) -> list[str]:
        if self.label_set is None:
            self.label_set = read_label_descriptors(label_paths(self.cfg.data, "train")[2])
        return self.label_set.names

    def use_feature_spec(self, spec: FeatureSpec) -> None:
        """Adopt the model's input features; refuse explicit task settings that differ."""
        for key, attr in FeatureSpec.TASK_FIELDS.items():
            mine = getattr(self.cfg, key)
            if mine is not None and mine != getattr(spec, attr):
                raise ValueError(
                    f"task.{key}={mine} contradicts the encoder's input ({spec.describe()}): a model "
                    f"only works on the features it was trained on; drop task.{key} (null takes the "
                    "checkpoint's)")
        self.feature_spec = spec
        for dataset in self.datasets.values():
            dataset.feature_spec = spec

    def build_model(self, cfg, from_checkpoint: bool = False):
        if cfg.get("class_names") is not None:  # a classifier checkpoint: no data folder needed
            self.label_set = LabelSet(list(cfg.class_names), list(cfg.class_names), "checkpoint")
        if cfg.get("pretrained_checkpoint") and not from_checkpoint:
            with open_dict(cfg):
                cfg.pretrained_checkpoint = launch_path(cfg.pretrained_checkpoint)
        model = super().build_model(cfg, from_checkpoint)
        if model.needs_param_groups:
            logger.info("layer_decay/head_lr_scale: parameters carry optim_overrides lr scales "
                        "(honoured by optimizer._name=composite with dynamic_groups=true)")
        # ``cfg`` is the node saved in checkpoints (the builder works on a merged copy).
        with open_dict(cfg):
            for key, value in {**model.snapshot(), "class_names": list(self.class_names),
                               "multi_label": bool(self.cfg.multi_label),
                               "target_length": int(self.cfg.target_length)}.items():
                cfg[key] = plain(value)
        return model

    @staticmethod
    def open_pretrained(path: str) -> Checkpoint:
        """The checkpoint fine-tuning starts from, for ``classifier_encoder`` (models sit below
        the one funnel, ``loading.open_checkpoint``): a ``.pt`` of either kind or an exported folder."""
        return open_checkpoint(path)

    def check_run(self, model, root) -> None:
        """``run_checks``' checks, the run's lock and provenance record, and what the validation
        numbers are (``validation_notes``)."""
        check_settings(self.cfg, self.feature_spec, self.min_frames)
        if root is not None:
            log_validation_notes(root, self.cfg.data, self.feature_spec)
            check_metric(root, self.cfg.multi_label)
            pretrained = provenance.pretraining_record(model.cfg.pretrained_checkpoint)
            record = self.record_provenance(root, "finetuning", pretrained)
            check_resume(root, list(self.class_names), self.cfg.multi_label, model.head_norm, model, record)

    def split_files(self, split: str) -> tuple[str, str | None]:
        return label_paths(self.cfg.data, split)[:2]

    def load_dataset(self, split: str, **kwargs) -> None:
        if self.feature_spec is None:  # fairseq builds the model first; other callers get this
            self.feature_spec = FeatureSpec.from_task_cfg(self.cfg)
        manifest, labels, descriptors = label_paths(self.cfg.data, split)
        train = split == "train"
        label_set = read_label_descriptors(descriptors)
        if label_set.names != list(self.class_names):
            raise LabelError(f"{descriptors}: classes {label_set.names[:5]}... differ from the model's "
                             f"{list(self.class_names)[:5]}... ({label_set.num_classes} vs {len(self.class_names)}); "
                             "a model scores only the classes (and order) it was trained on")
        dataset = ClassificationDataset(
            manifest, labels, label_set,
            target_length=self.cfg.target_length, multi_label=self.cfg.multi_label, train=train,
            weighted_sampling=self.cfg.weighted_sampling and train, seed=self.cfg.seed,
            feature_spec=self.feature_spec, min_frames=self.min_frames,
        )
        self.attach_cache(dataset, split)
        self.datasets[split] = dataset

    def begin_valid_epoch(self, epoch: int, model) -> None:
        reset_scores()  # the whole-split metric must see this validation run's clips only
        super().begin_valid_epoch(epoch, model)

    def state_dict(self) -> dict:
        # Trainer.state_dict builds task_state before extra_state["metrics"]: emptying the
        # (already reduced) scores here keeps them out of every checkpoint (AudioSet: ~76 MB).
        reset_scores()
        return super().state_dict()

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        check_optimizer(model, optimizer)
        if self.cfg.mixup > 0 and "net_input" in sample:
            sample = self.mix(sample)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def mix(self, sample: dict) -> dict:
        """Mixup within the batch on raw features (the same as after the affine normalisation);
        a mixed clip is padded where both clips are."""
        net = sample["net_input"]
        x, pad = net["source"], net["padding_mask"]
        draw = draw_mixup(x.shape[0], self.cfg.mixup, self.cfg.mixup_alpha)
        x, y = apply_mixup(x, sample["target"], draw)
        if pad is not None:  # None: no clip is padded, nor is any mix of two
            partner, mixed = draw.partner.to(pad.device), draw.mixed.to(pad.device)
            pad = torch.where(mixed[:, None], pad & pad[partner], pad)
        return {**sample, "net_input": {"source": x, "padding_mask": pad}, "target": y}


def check_optimizer(model, optimizer) -> None:
    model = getattr(model, "module", model)
    if getattr(model, "needs_param_groups", False) and not getattr(optimizer, "supports_groups", False):
        raise ValueError(
            "model.layer_decay/head_lr_scale != 1 need per-parameter learning rates: set optimizer._name="
            "composite with optimizer.dynamic_groups=true (see config/finetune/base.yaml); "
            f"{type(optimizer).__name__} would train every parameter at one lr")


def plain(value):
    """Config values as plain Python (checkpoints are loaded with weights_only)."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
