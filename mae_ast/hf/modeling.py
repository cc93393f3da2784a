"""MAE-AST for transformers: ``MAEASTModel`` (the encoder) and ``MAEASTForAudioClassification``.

Parameter names are the package's (``MAE_AST``'s encoder at the top of ``MAEASTModel``,
under ``mae_ast.`` in the classifier), so ``model.safetensors`` holds the checkpoint's
tensors. ``hidden_states`` are the outputs of encoder layers 1..L, as ``extract_layers``
gives them (no input embedding first, unlike most transformers models)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrize import ParametrizationList
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import logging

from ..models.class_scores import per_clip_loss, resolve_loss
from ..models.encoder_input import EncoderInput
from ..models.encoder_layer import MultiheadSelfAttention, TransformerSentenceEncoderLayer
from ..models.head_norm import build_head_norm, mean_over_valid
from ..models.patch_grid import PatchGrid
from ..models.positions import ConvPosEmbed, SinusoidalPositionalEncoding, sinusoid_table
from .configuration import MAEASTConfig

logger = logging.get_logger(__name__)


@dataclass
class MAEASTModelOutput(BaseModelOutput):
    """``BaseModelOutput`` plus which output rows hold a clip (1) and which are padding (0)."""

    attention_mask: torch.Tensor | None = None


# ---- the transformer ----------------------------------------------------------------------

def eager_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                            **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class MAEASTAttention(MultiheadSelfAttention):
    """The package's attention, its product run by transformers' attention function for
    ``config._attn_implementation`` (``eager`` below, ``sdpa``, ...)."""

    def __init__(self, config: MAEASTConfig) -> None:
        super().__init__(config.encoder_embed_dim, config.encoder_attention_heads, config.attention_dropout)
        self.config = config
        self.scaling = (config.encoder_embed_dim // self.heads) ** -0.5
        self.is_causal = False

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``mask``: additive, ``(B, 1, 1, T)`` (``MAEASTEncoder`` makes it)."""
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        out, _ = attention(self, q, k, v, mask, scaling=self.scaling, dropout=self.dropout if self.training else 0.0)
        return out


class MAEASTLayer(GradientCheckpointingLayer, TransformerSentenceEncoderLayer):
    """The package's block (fairseq's ``TransformerSentenceEncoderLayer``), checkpointable by
    transformers, with transformers' attention functions."""

    def __init__(self, config: MAEASTConfig) -> None:
        super().__init__(config.encoder_embed_dim, config)

    def build_attention(self, dim: int, cfg: MAEASTConfig) -> MAEASTAttention:
        return MAEASTAttention(cfg)


class MAEASTEncoder(nn.Module):
    """wav2vec 2.0's stack without its convolutional positions, with fairseq's layerdrop."""

    def __init__(self, config: MAEASTConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(MAEASTLayer(config) for _ in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(config.encoder_embed_dim)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Output and each layer's output."""
        mask = None
        if padding is not None:  # additive: 0 where a key is attended, the dtype's min at padding
            mask = torch.zeros(padding.shape, dtype=x.dtype, device=x.device)
            mask = mask.masked_fill(padding, torch.finfo(x.dtype).min)[:, None, None, :]
        if not self.config.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, p=self.config.dropout, training=self.training)
        hidden_states = []
        for layer in self.layers:
            if self.training and self.config.encoder_layerdrop > 0 and torch.rand([]) <= self.config.encoder_layerdrop:
                continue
            x = layer(x, mask)
            hidden_states.append(x)
        if self.config.layer_norm_first:
            x = self.layer_norm(x)
        return x, hidden_states


# ---- the models ---------------------------------------------------------------------------

class MAEASTPreTrainedModel(PreTrainedModel):
    config_class = MAEASTConfig
    base_model_prefix = "mae_ast"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["MAEASTLayer"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The package's initialisation (fairseq's init_bert_params for the transformer), for the
        tensors the folder did not fill (``init`` skips loaded ones)."""
        if isinstance(module, nn.Linear):
            if module is self.base_model.post_extract_proj:
                bound = 1 / math.sqrt(module.in_features)
                init.kaiming_uniform_(module.weight, a=math.sqrt(5))
                init.uniform_(module.bias, -bound, bound)
            elif module is getattr(self, "head", None):
                init.trunc_normal_(module.weight, std=0.02)
                init.zeros_(module.bias)
            else:
                init.normal_(module.weight, mean=0.0, std=0.02)
                init.zeros_(module.bias)
        elif isinstance(module, ParametrizationList):  # the weight norm of ConvPosEmbed's conv
            g, v = module.original0, module.original1  # (1, 1, kernel), (dim, dim / groups, kernel)
            init.normal_(v, mean=0.0, std=math.sqrt(4 / (v.shape[2] * v.shape[0])))
            init.copy_(g, torch.norm_except_dim(v, 2, 2))
        elif isinstance(module, nn.Conv1d):
            init.zeros_(module.bias)
        elif isinstance(module, SinusoidalPositionalEncoding):
            init.copy_(module.pe, sinusoid_table(module.pe.shape[2], module.pe.shape[1]))
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            if module.weight is not None:
                init.ones_(module.weight)
                init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)

    def frame_padding(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """transformers' mask (1 = real) -> the package's (True = padding); without a mask,
        warn once when a row ends in the input mean (the extractor's padding value)."""
        if attention_mask is not None:
            return attention_mask.to(input_values.device) == 0
        if len(input_values) > 1:
            mean = self.base_model.batch_norm.running_mean.to(input_values.dtype)
            if bool((input_values[:, -1] == mean).all(dim=-1).any()):
                logger.warning_once("a padded batch came without its attention_mask: padding frames are read as "
                                    "audio; pass the feature extractor's attention_mask")
        return None


class MAEASTModel(EncoderInput, MAEASTPreTrainedModel):
    """The encoder: its input steps (``EncoderInput``: BatchNorm x0.5, patches, a Linear, the
    positions) and the transformer."""

    def __init__(self, config: MAEASTConfig) -> None:
        super().__init__(config)
        self.grid = PatchGrid.from_model_cfg(config, config.feature_width)
        self.batch_norm = nn.BatchNorm2d(num_features=1, affine=False)
        self.post_extract_proj = nn.Linear(self.grid.patch_dim, config.encoder_embed_dim)
        self.enc_conv_pos_embed = (ConvPosEmbed(config, config.encoder_embed_dim, nn.utils.parametrizations.weight_norm)
                                   if config.enc_conv_pos else None)
        # Non-persistent: 147 MB of a formula (the package's .pt checkpoints keep it for strict loaders).
        self.enc_sine_pos_embed = (SinusoidalPositionalEncoding(config.encoder_embed_dim, config.max_token_length,
                                                                persistent=False) if config.enc_sine_pos else None)
        self.encoder = MAEASTEncoder(config)
        self.post_init()

    def check_input(self, source: torch.Tensor) -> None:
        width = self.config.feature_width
        if source.dim() != 3 or source.shape[-1] != width:
            raise ValueError(f"expected input_values of shape (batch, frames, {width}) from this model's "
                             f"feature extractor, got {tuple(source.shape)}")

    def encode(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """(output, each layer's tokens, token padding (True = padding)): ``MAE_AST.forward_features``."""
        source = input_values.to(self.dtype)  # a bf16 model takes the extractor's float32
        x, pad = self.embed(source, self.frame_padding(source, attention_mask))
        x, hidden_states = self.encoder(x, pad)
        if pad is None:
            pad = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        return x, hidden_states, pad

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                **kwargs: Any) -> MAEASTModelOutput | tuple:
        """``extract_layers``: the last layer's output, with ``config.time_aligned`` the channel
        blocks of each time step averaged; ``attention_mask`` marks each clip's rows."""
        _, states, pad = self.encode(input_values, attention_mask)
        if self.config.time_aligned:
            states, pad = self.grid.time_align(states, pad)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        out = MAEASTModelOutput(last_hidden_state=states[-1], attention_mask=(~pad).long(),
                                hidden_states=tuple(states) if output_hidden_states else None)
        return out if (return_dict if return_dict is not None else self.config.return_dict) else out.to_tuple()


class MAEASTForAudioClassification(MAEASTPreTrainedModel):
    """``MAE_AST_Classifier`` at evaluation: mean over each clip's valid tokens, ``fc_norm``,
    dropout, Linear (no SpecAugment, noise or roll: those are the package's trainer's)."""

    def __init__(self, config: MAEASTConfig) -> None:
        super().__init__(config)
        self.mae_ast = MAEASTModel(config)
        self.fc_norm = build_head_norm(config.head_norm, config.encoder_embed_dim)
        self.head_drop = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(config.encoder_embed_dim, config.num_labels)
        self.post_init()

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs: Any) -> SequenceClassifierOutput | tuple:
        """Logits (their softmax or, ``config.multi_label``, sigmoid: ``load_classifier(...).scores``);
        with ``labels`` (class indices, or ``(B, C)`` 0/1 or soft rows), the loss the model was
        fine-tuned with (``config.loss``, the criterion's), averaged over clips, in float32."""
        x, states, pad = self.mae_ast.encode(input_values, attention_mask)
        logits = self.head(self.head_drop(self.fc_norm(mean_over_valid(x, pad))))
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if labels.dim() == 1 and not labels.is_floating_point():  # class indices
                labels = F.one_hot(labels.long(), logits.shape[-1])
            if labels.shape != logits.shape:  # a (B, 1) column would broadcast into a wrong number
                raise ValueError(f"labels of shape {tuple(labels.shape)}: give (B,) class indices or (B, "
                                 f"{logits.shape[-1]}) 0/1 or soft rows for logits {tuple(logits.shape)}")
            kind = resolve_loss(getattr(self.config, "loss", None), self.config.multi_label)
            loss = per_clip_loss(logits, labels, kind).mean()
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        out = SequenceClassifierOutput(loss=loss, logits=logits,
                                       hidden_states=tuple(states) if output_hidden_states else None)
        return out if (return_dict if return_dict is not None else self.config.return_dict) else out.to_tuple()
