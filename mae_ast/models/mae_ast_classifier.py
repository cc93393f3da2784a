"""``mae_ast_classifier``: a MAE-AST encoder with a pooled linear head, for fine-tuning.

timm's split: ``forward_features`` (the encoder's own embedding path, augmentation in
training: tokens) -> ``forward_head`` (mean over the valid tokens, then ``fc_norm``,
dropout, Linear; ``pre_logits=True`` stops at the pooled vector).

``fc_norm`` is ``model.head_norm``: ``batchnorm`` standardises each pooled feature over
the clips (a BatchNorm without affine parameters: MAE's linear-probe protocol),
``layernorm`` normalises each clip over its features (MAE's fine-tuning head). Pooled
encoder features can have per-feature means far larger than their spread across clips
(issue 17: 0.81 vs 0.052 on a 4-layer 256-d model; the encoder is post-LN, so its output
is a LayerNorm's, whose per-feature shift survives mean-pooling while the clip-to-clip
part averages down). A per-clip LayerNorm leaves that constant vector in place and Adam
on the Linear layer after it crawls (0.42 where a standardised logistic regression got
0.625 on the same features); standardising each feature is what the regression does.
Checkpoints record the choice; one without it (older than the field) has the LayerNorm.

The encoder comes from ``pretrained_checkpoint`` (ours, a released one or the original
code's, loaded by ``mae_ast.inference`` without fairseq's pretraining task) or, without
one, is randomly initialised (the "random init" baseline) with the released models'
architecture (``builders.PRETRAINING_ARCHITECTURE``, = config/pretrain/mae_ast.yaml's
model settings: sinusoidal positions, its dropouts and layerdrop), ``encoder``'s
MAE_AST_Config fields on top (``{encoder_layers: 2, encoder_embed_dim: 64, ...}`` shrinks
it). The decoder and the pretraining heads are dropped: they are not in this model's
state dict, and their settings never stop an encoder from being built.

Self-contained checkpoints: at build time the task writes the encoder's config, the
feature spec, the class names, ``multi_label`` and ``target_length`` into ``cfg.model``
(``snapshot()``), so ``load_classifier`` and ``load_model_ensemble_and_task`` rebuild the
model from the classifier checkpoint alone, never reading the pretraining checkpoint or
the data folder again.
"""


import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Optional

import torch
import torch.nn as nn

from .._fairseq import BaseFairseqModel, ChoiceEnum, FairseqDataclass, register_model
from ..data.augment import add_noise, spec_augment, time_roll
from ..checkpoints import read_checkpoint
from .builders import build_backbone, encoder_from_state, features_of, random_init_encoder
from .mae_ast import MAE_AST

logger = logging.getLogger(__name__)

POOLING_CHOICES = ChoiceEnum(["mean"])
HEAD_NORM_CHOICES = ChoiceEnum(["layernorm", "batchnorm"])
# SSAST's time roll: up to 10 frames either way (its np.random.randint(-10, 10)).
MAX_ROLL = 10


@dataclass
class MAE_AST_Classifier_Config(FairseqDataclass):
    pretrained_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "MAE-AST checkpoint to fine-tune; null = random init from model.encoder"})
    encoder: Optional[Any] = field(
        default=None, metadata={"help": "random init: MAE_AST_Config fields that change the released "
                                "architecture (config/pretrain/mae_ast.yaml's model settings), e.g. "
                                "{encoder_layers: 2, encoder_embed_dim: 64}; filled at build time with the "
                                "whole encoder config (from the checkpoint with pretrained_checkpoint; do not "
                                "set it then)"})
    features: Optional[Any] = field(
        default=None, metadata={"help": "filled at build time: {sample_rate, feature_dim, deltas} of the input"})
    class_names: Optional[Any] = field(
        default=None, metadata={"help": "filled at build time from label_descriptors.csv"})
    multi_label: Optional[bool] = field(default=None, metadata={"help": "filled at build time from task.multi_label"})
    target_length: Optional[int] = field(
        default=None, metadata={"help": "filled at build time from task.target_length (frames per clip)"})
    # One choice: kept because every fine-tuned checkpoint's config carries the key.
    pooling: POOLING_CHOICES = field(default="mean", metadata={"help": "token pooling: mean over valid tokens"})
    head_norm: Optional[HEAD_NORM_CHOICES] = field(
        default=None, metadata={"help": "normalisation of the pooled features before the linear head: "
                                "batchnorm = each feature standardised over clips (BatchNorm1d, no affine "
                                "parameters; MAE's linear probe), layernorm = each clip over its features; "
                                "null = batchnorm with freeze_encoder, layernorm otherwise (batchnorm gained "
                                "nothing in full fine-tuning). The resolved value is saved in checkpoints; "
                                "a checkpoint without it has the layernorm head"})
    head_dropout: float = field(default=0.0, metadata={"help": "dropout before the linear head"})
    freeze_encoder: bool = field(
        default=False, metadata={"help": "linear probe: encoder frozen (no grads, eval mode: BatchNorm and "
                                 "dropout fixed); only the head trains (its BatchNorm head_norm in train "
                                 "mode, as MAE's probe)"})
    layer_decay: float = field(
        default=1.0, metadata={"help": "layer-wise lr decay: layer l of L gets lr * decay^(L+1-l) (embedding "
                               "l=0, head L+1); < 1 needs optimizer._name=composite with dynamic_groups=true"})
    head_lr_scale: float = field(
        default=1.0, metadata={"help": "lr multiplier of the head (SSAST's head_lr); != 1 needs the composite "
                               "optimizer like layer_decay"})
    dropout: Optional[float] = field(default=None, metadata={"help": "encoder dropout; null = the checkpoint's"})
    attention_dropout: Optional[float] = field(
        default=None, metadata={"help": "encoder attention dropout; null = the checkpoint's"})
    activation_dropout: Optional[float] = field(
        default=None, metadata={"help": "encoder FFN activation dropout; null = the checkpoint's"})
    encoder_layerdrop: Optional[float] = field(
        default=None, metadata={"help": "encoder layerdrop; null = the checkpoint's"})


# What null head_norm means: the linear probe needs per-feature standardisation (see the
# module docstring). In full fine-tuning the encoder adapts its own output, and on the
# keyword set the BatchNorm head gained nothing (test accuracy 0.85 / 0.875 over seeds
# 1 / 2, LayerNorm 0.925 / 0.80), so the LayerNorm stays (and old checkpoints' keys with it).
HEAD_NORM_PROBE = "batchnorm"
HEAD_NORM_FINETUNE = "layernorm"
# A checkpoint without head_norm predates the field: its head is the LayerNorm one.
HEAD_NORM_LEGACY = "layernorm"
# The head settings a saved classifier (checkpoint or exported folder) may leave out.
SAVED_DEFAULTS = {"head_dropout": 0.0, "freeze_encoder": False, "pooling": "mean", "head_norm": HEAD_NORM_LEGACY}


def evaluation_settings(saved: dict) -> SimpleNamespace:
    """The model settings that rebuild a saved classifier for scoring: its own head settings
    (``SAVED_DEFAULTS`` for those it lacks) and no lr scales (a training matter)."""
    given = {k: saved[k] for k in SAVED_DEFAULTS if saved.get(k) is not None}
    return SimpleNamespace(**{**SAVED_DEFAULTS, **given, "layer_decay": 1.0, "head_lr_scale": 1.0})


DROPOUT_FIELDS = ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop")


def load_pretrained(path: str) -> tuple[MAE_AST, dict, dict]:
    """(encoder with the checkpoint's weights, encoder config, features) of a pretraining
    checkpoint or of a fine-tuned classifier (whose encoder is fine-tuned further)."""
    return encoder_from_state(read_checkpoint(path))


@register_model("mae_ast_classifier", dataclass=MAE_AST_Classifier_Config)
class MAE_AST_Classifier(BaseFairseqModel):
    def __init__(self, cfg: Any, backbone: MAE_AST, encoder: dict, num_classes: int,
                 augment: dict | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.encoder_cfg = dict(encoder)
        self.features = features_of(backbone.feature_spec)
        self.augment = {"freqm": 0, "timem": 0, "noise": False, **(augment or {})}
        dim = backbone.cfg.encoder_embed_dim
        # Named fc_norm for both kinds, so checkpoints from before head_norm load unchanged.
        self.head_norm = resolve_head_norm(cfg, from_checkpoint=False)
        self.fc_norm = build_head_norm(self.head_norm, dim)
        self.head_drop = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        # Hidden states are fixed: no layer is dropped at evaluation anyway.
        if cfg.freeze_encoder:
            for p in self.backbone.parameters():
                p.requires_grad = False
        self.set_optim_overrides()

    @classmethod
    def build_model(cls, cfg: MAE_AST_Classifier_Config, task) -> "MAE_AST_Classifier":
        from_checkpoint = getattr(task, "building_from_checkpoint", False)
        if cfg.pretrained_checkpoint and not from_checkpoint:
            if cfg.encoder is not None:
                raise ValueError("model.encoder is for random init; with model.pretrained_checkpoint the "
                                 "architecture is the checkpoint's (set model.dropout etc. to change dropouts)")
            backbone, encoder, features = load_pretrained(cfg.pretrained_checkpoint)
            logger.info(f"encoder initialised from {cfg.pretrained_checkpoint}")
            backbone = apply_dropouts(backbone, encoder, cfg)
        else:
            encoder = {**dict(cfg.encoder or {})}
            features = dict(cfg.features) if cfg.features is not None else task.explicit_features()
            encoder = {**encoder, **{k: getattr(cfg, k) for k in DROPOUT_FIELDS if getattr(cfg, k) is not None}}
            if not from_checkpoint:
                # A checkpoint's encoder is already complete (and older ones must keep the
                # defaults they were built with); a new random init is the released architecture.
                asked = encoder
                encoder = random_init_encoder(encoder)
                logger.info(f"model.pretrained_checkpoint=null: encoder randomly initialised, architecture of "
                            f"config/pretrain/mae_ast.yaml{f' with {asked}' if asked else ''}: "
                            f"{describe_encoder(encoder)}")
            backbone = build_backbone(encoder, features)
        task.use_feature_spec(backbone.feature_spec)
        cfg.head_norm = resolve_head_norm(cfg, from_checkpoint)
        augment = {k: getattr(task.cfg, k) for k in ("freqm", "timem", "noise")}
        return cls(cfg, backbone, encoder, len(task.class_names), augment)

    # ---- snapshot: what makes a checkpoint self-contained ------------------------------

    def snapshot(self) -> dict:
        """The ``cfg.model`` fields that rebuild this model without the pretraining
        checkpoint or the data folder."""
        return {"encoder": dict(self.encoder_cfg), "features": dict(self.features), "head_norm": self.head_norm}

    # ---- forward ------------------------------------------------------------------------

    def train(self, mode: bool = True) -> "MAE_AST_Classifier":
        super().train(mode)
        if self.cfg.freeze_encoder:  # linear probe: BatchNorm statistics and dropout stay fixed
            self.backbone.eval()
        return self

    def augment_features(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Training-time SpecAugment (+ SSAST's noise and time roll) on NORMALISED features.

        SSAST masks the raw log-mel with 0 and normalises afterwards, so its masks land at
        about +0.47 (normalised), not at the mean. Our normalisation is the encoder's own
        BatchNorm (x0.5), whose statistics the dataset does not know, so the masks are
        applied here, after it, with fill 0 = the mean: the clean version of SSAST's
        intent. Noise and roll come after normalisation, as in SSAST."""
        a = self.augment
        if a["freqm"] or a["timem"]:
            x = spec_augment(x, int(a["freqm"]), int(a["timem"]), fill=0.0)
        if a["noise"]:
            x = add_noise(x)
            # Rolled within each clip's valid frames, so padding stays at the end where
            # the padding mask says it is (SSAST rolls the zero-padded clip whole).
            valid = [x.shape[1]] * len(x) if padding_mask is None else (~padding_mask).sum(1).tolist()
            x = torch.stack([torch.cat([time_roll(c[:n], MAX_ROLL), c[n:]]) for c, n in zip(x, valid)])
        return x

    def forward_features(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None) -> dict:
        """``(B, frames, columns)`` features -> the encoder's tokens (``x``, ``padding_mask``:
        ``MAE_AST.forward_features``), with training-time augmentation on the normalised
        features."""
        augment = (lambda x: self.augment_features(x, padding_mask)) if self.training else None
        return self.backbone.forward_features(source, padding_mask, augment=augment)

    @staticmethod
    def pool(features: dict) -> torch.Tensor:
        """Mean over each clip's valid tokens: ``(B, dim)``."""
        x, pad = features["x"], features["padding_mask"]
        valid = (~pad).unsqueeze(-1).to(x.dtype)
        return (x * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled ``(B, dim)`` -> logits: ``fc_norm``, dropout, Linear."""
        return self.head(self.head_drop(self.fc_norm(pooled)))

    def forward_head(self, features: dict, pre_logits: bool = False) -> torch.Tensor:
        """timm's split: tokens -> pooled (``pre_logits``) -> logits ``(B, num_classes)``."""
        pooled = self.pool(features)
        return pooled if pre_logits else self.classify(pooled)

    def forward(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(source, padding_mask))

    # ---- layer-wise learning rates --------------------------------------------------------

    def layer_id(self, name: str) -> int:
        """0 = input embedding, 1..L = encoder layers, L+1 = head (and a final LayerNorm)."""
        L = len(self.backbone.encoder.layers)
        if not name.startswith("backbone."):
            return L + 1
        parts = name.split(".")
        if parts[1:3] == ["encoder", "layers"]:
            return int(parts[3]) + 1
        if parts[1:3] == ["encoder", "layer_norm"] and self.backbone.cfg.layer_norm_first:
            return L + 1  # pre-LN: applied after the last layer
        return 0

    def lr_scales(self) -> dict[str, float]:
        """Each trainable parameter's lr multiplier: layer_decay^(L+1-layer_id), times
        head_lr_scale on the head."""
        L = len(self.backbone.encoder.layers)
        scales = {}
        for name, p in self.named_parameters():
            if p.requires_grad:
                scale = self.cfg.layer_decay ** (L + 1 - self.layer_id(name))
                scales[name] = scale * (self.cfg.head_lr_scale if not name.startswith("backbone.") else 1.0)
        return scales

    def set_optim_overrides(self) -> None:
        """fairseq's composite optimizer (dynamic_groups) gives parameters with an
        ``optim_overrides`` lr_scale their own Adam and scheduler at lr * scale; the plain
        optimizers would ignore it, so the task refuses them when a scale is not 1."""
        for p in self.parameters():
            if hasattr(p, "optim_overrides"):
                del p.optim_overrides
        self.needs_param_groups = False
        for name, scale in self.lr_scales().items():
            if scale != 1.0:
                self.get_parameter(name).optim_overrides = {"optimizer": {"lr_scale": float(scale)}}
                self.needs_param_groups = True


class FeatureNorm(nn.BatchNorm1d):
    """Each pooled feature standardised over the batch in training, over the running
    statistics at evaluation; no affine parameters (the linear layer after it has them).
    A one-clip training batch has no spread to standardise by, so it uses the running
    statistics instead of failing as BatchNorm1d does."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, affine=False, eps=1e-6)  # MAE's probe: BatchNorm1d(affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, training=False, eps=self.eps)
        return super().forward(x)


def resolve_head_norm(cfg: Any, from_checkpoint: bool) -> str:
    """``cfg.head_norm``, or what null means: the legacy LayerNorm for a checkpoint
    written before the field existed, else the probe's or the fine-tune's default."""
    chosen = getattr(cfg, "head_norm", None)
    if chosen is not None:
        return str(getattr(chosen, "value", chosen))
    if from_checkpoint:
        return HEAD_NORM_LEGACY
    return HEAD_NORM_PROBE if cfg.freeze_encoder else HEAD_NORM_FINETUNE


def build_head_norm(kind: str, dim: int) -> nn.Module:
    if kind == "batchnorm":
        return FeatureNorm(dim)
    if kind == "layernorm":
        return nn.LayerNorm(dim)
    raise ValueError(f"model.head_norm={kind!r}: expected layernorm or batchnorm")


def describe_encoder(encoder: dict) -> str:
    """One line: depth, width, patches, positions, dropouts."""
    e = encoder
    positions = [name for name, on in (("sinusoidal", e["enc_sine_pos"]), ("convolutional", e["enc_conv_pos"])) if on]
    return (f"{e['encoder_layers']} layers x {e['encoder_embed_dim']}-d, {e['ast_kernel_size_time']}x"
            f"{e['ast_kernel_size_chan']} patches, {' + '.join(positions) or 'NO'} positions, dropout "
            f"{e['dropout']}, attention dropout {e['attention_dropout']}, layerdrop {e['encoder_layerdrop']}")


def apply_dropouts(backbone: MAE_AST, encoder: dict, cfg: Any) -> MAE_AST:
    """Dropout overrides on a loaded backbone: rebuilt with the new values (same weights)."""
    changes = {k: getattr(cfg, k) for k in DROPOUT_FIELDS if getattr(cfg, k) is not None}
    if not changes:
        return backbone
    encoder.update(changes)
    rebuilt = build_backbone(encoder, features_of(backbone.feature_spec))
    rebuilt.load_state_dict(backbone.state_dict(), strict=True)
    return rebuilt
