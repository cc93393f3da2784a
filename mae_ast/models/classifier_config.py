"""Settings of the ``mae_ast_classifier`` model: field names are those of every fine-tuned
checkpoint's ``cfg.model``; "filled at build time" fields let a checkpoint rebuild alone.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from .._fairseq import ChoiceEnum, FairseqDataclass

POOLING_CHOICES = ChoiceEnum(["mean"])
HEAD_NORM_CHOICES = ChoiceEnum(["layernorm", "batchnorm"])


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
        default=None, metadata={"help": "filled at build time: {sample_rate, feature_dim, deltas} of the input; "
                                "a config that has it is a saved classifier's, rebuilt from encoder + features"})
    class_names: Optional[Any] = field(
        default=None, metadata={"help": "filled at build time from label_descriptors.csv"})
    multi_label: Optional[bool] = field(default=None, metadata={"help": "filled at build time from task.multi_label"})
    target_length: Optional[int] = field(
        default=None, metadata={"help": "filled at build time from task.target_length (frames per clip)"})
    # One choice: every fine-tuned checkpoint's config carries the key.
    pooling: POOLING_CHOICES = field(default="mean", metadata={"help": "token pooling: mean over valid tokens"})
    head_norm: Optional[HEAD_NORM_CHOICES] = field(
        default=None, metadata={"help": "normalisation of the pooled features before the linear head: "
                                "batchnorm = each feature standardised over clips (BatchNorm1d, no affine "
                                "parameters; MAE's linear probe), layernorm = each clip over its features; "
                                "null = batchnorm with freeze_encoder, layernorm otherwise (batchnorm gained "
                                "nothing in full fine-tuning). Filled at build time with the resolved value"})
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

DROPOUT_FIELDS = ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop")
