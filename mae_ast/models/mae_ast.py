"""MAE-AST: a masked autoencoder over fbank patches or frames, in MAE's steps (mask,
encoder on retained tokens, decoder, heads at masked positions). Parameter and buffer
names equal the original's, so released checkpoints and s3prl load both ways, strictly.
"""

import logging
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from .._fairseq import BaseFairseqModel, ChoiceEnum, FairseqDataclass, register_model
from ..data.features import FeatureSpec
from .encoder_input import EncoderInput
from .encoder_layer import ACTIVATION_FNS
from .masking import MaskPlan, check_mask_type, compute_mask
from .patch_grid import PatchGrid
from .positions import ConvPosEmbed, add_positions
from .transformer import SinusoidalPositionalEncoding, TransformerEncoder

logger = logging.getLogger(__name__)

MASKING_DISTRIBUTION_CHOICES = ChoiceEnum(["static", "uniform", "normal", "poisson"])


@dataclass
class MAE_AST_Config(FairseqDataclass):
    # Patch (16x16) or frame (2x128) tokens: kernel = stride in every released model.
    ast_kernel_size_chan: int = field(default=16, metadata={"help": "patch size along mel channels"})
    ast_kernel_size_time: int = field(default=16, metadata={"help": "patch size along time frames"})
    ast_kernel_stride_chan: int = field(default=16, metadata={"help": "patch stride along mel channels"})
    ast_kernel_stride_time: int = field(default=16, metadata={"help": "patch stride along time frames"})

    encoder_layers: int = field(default=12, metadata={"help": "encoder transformer layers"})
    encoder_embed_dim: int = field(default=768, metadata={"help": "encoder width"})
    encoder_ffn_embed_dim: int = field(default=3072, metadata={"help": "FFN width (encoder and decoder)"})
    encoder_attention_heads: int = field(default=12, metadata={"help": "attention heads (encoder and decoder)"})
    activation_fn: ChoiceEnum(list(ACTIVATION_FNS)) = field(default="gelu", metadata={"help": "FFN activation"})
    layer_norm_first: bool = field(default=False, metadata={"help": "pre-LN blocks instead of post-LN"})
    feature_grad_mult: float = field(default=1.0, metadata={"help": "gradient scale of the (identity) feature extractor"})

    use_post_enc_proj: bool = field(
        default=False, metadata={"help": "project encoder output to decoder width (needed if widths differ)"}
    )
    decoder_embed_dim: int = field(default=768, metadata={"help": "decoder width"})
    decoder_layers: int = field(default=2, metadata={"help": "decoder transformer layers"})
    decoder_layerdrop: float = field(default=0.0, metadata={"help": "probability of dropping a decoder layer"})

    dropout: float = field(default=0.1, metadata={"help": "dropout in the transformer"})
    attention_dropout: float = field(default=0.1, metadata={"help": "dropout on attention weights"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout after the FFN activation"})
    encoder_layerdrop: float = field(default=0.0, metadata={"help": "probability of dropping an encoder layer"})
    dropout_input: float = field(default=0.0, metadata={"help": "dropout on projected patches (masking only)"})

    random_mask_prob: float = field(
        default=0.75,
        metadata={"help": "fraction of tokens masked; for retain_spans the span probability of "
                  "compute_mask_indices, whose spans are RETAINED (1.45 masks ~24%)"},
    )
    mask_length: int = field(default=10, metadata={"help": "retain_spans: span length"})
    mask_selection: MASKING_DISTRIBUTION_CHOICES = field(
        default="static", metadata={"help": "retain_spans: how to choose span lengths"}
    )
    mask_other: float = field(default=0, metadata={"help": "retain_spans: secondary span-length argument"})
    no_mask_overlap: bool = field(default=False, metadata={"help": "retain_spans: forbid overlapping spans"})
    mask_min_space: int = field(default=0, metadata={"help": "retain_spans: min space between spans if no overlap"})

    conv_pos: int = field(default=128, metadata={"help": "convolutional positions: kernel size"})
    conv_pos_groups: int = field(default=16, metadata={"help": "convolutional positions: groups"})
    checkpoint_activations: bool = field(default=False, metadata={"help": "not supported (the original did not implement it)"})

    compile_blocks: bool = field(
        default=False, metadata={"help": "torch.compile each transformer block (in place: same checkpoint keys)"}
    )

    max_token_length: int = field(default=48000, metadata={"help": "rows of the sinusoidal position table"})
    save_sine_tables: bool = field(default=True, metadata={
        "help": "false: leave the fixed sinusoidal tables (enc_/dec_sine_pos_embed.pe, 147 MB each at 48000 x 768) "
                "out of saved checkpoints; they are recomputed on load here, but the original's and s3prl's "
                "built-in loaders (strict) refuse such checkpoints"})
    enc_sine_pos: bool = field(default=False, metadata={"help": "sinusoidal positions before the encoder"})
    enc_conv_pos: bool = field(default=False, metadata={"help": "convolutional positions before the encoder"})
    dec_sine_pos: bool = field(default=False, metadata={"help": "sinusoidal positions before the decoder"})
    dec_conv_pos: bool = field(default=False, metadata={"help": "convolutional positions before the decoder"})


def check_masking_cfg(cfg: Any, mask_type: str) -> None:
    """Refuse a masking setup that cannot train, at build time, with the valid range."""
    check_mask_type(mask_type)
    p = cfg.random_mask_prob
    if mask_type == "retain_spans":
        if not p > 0:
            raise ValueError(f"model.random_mask_prob={p}: retain_spans needs a span probability > 0 "
                             "(1.45 masks ~24% of tokens, 0.74 ~49%)")
        if cfg.mask_length < 1:
            raise ValueError(f"model.mask_length={cfg.mask_length}: must be >= 1")
    elif not 0 < p < 1:
        raise ValueError(f"model.random_mask_prob={p}: {mask_type} masks that fraction of tokens; "
                         "it must lie in (0, 1), e.g. 0.75")


@register_model("mae_ast", dataclass=MAE_AST_Config)
class MAE_AST(EncoderInput, BaseFairseqModel):
    def __init__(self, cfg: MAE_AST_Config, task_cfg: Any) -> None:
        super().__init__()
        if getattr(task_cfg, "feature_type", "fbank") != "fbank":  # the only input this package computes
            raise ValueError(f"task.feature_type={task_cfg.feature_type!r}: this implementation computes Kaldi fbank "
                             "only (the released checkpoints' input); set task.feature_type=fbank")
        if cfg.checkpoint_activations:
            raise NotImplementedError("model.checkpoint_activations is not implemented (nor was it in the original)")
        if cfg.decoder_embed_dim != cfg.encoder_embed_dim and not cfg.use_post_enc_proj:
            raise ValueError("decoder_embed_dim != encoder_embed_dim needs model.use_post_enc_proj=true")
        self.cfg = cfg
        self.task_cfg = task_cfg
        self.feature_spec = FeatureSpec.from_task_cfg(task_cfg)
        self.grid = PatchGrid.from_model_cfg(cfg, self.feature_spec.width)
        self.grid.warn_unused_columns()
        self.mask_type = getattr(task_cfg, "mask_type", "random_mask")
        check_masking_cfg(cfg, self.mask_type)
        # Copied out once: torch.compile cannot trace omegaconf attribute lookups (a graph
        # break at every read), so forward never reads self.cfg or self.task_cfg.
        self.mask_args = dict(
            mask_prob=cfg.random_mask_prob, mask_length=cfg.mask_length, selection=cfg.mask_selection,
            other=cfg.mask_other, no_overlap=cfg.no_mask_overlap, min_space=cfg.mask_min_space,
        )
        patch_dim = self.grid.patch_dim

        self.batch_norm = nn.BatchNorm2d(num_features=1, affine=False)
        # Unused in forward, as in the original; kept so checkpoints load strictly.
        self.layer_norm = nn.LayerNorm(self.feature_spec.num_mel_bins)
        self.post_extract_proj = nn.Linear(patch_dim, cfg.encoder_embed_dim)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        # Never reaches the encoder (masked tokens are dropped); checkpoints carry it.
        self.encoder_mask_emb = nn.Parameter(torch.FloatTensor(cfg.encoder_embed_dim).uniform_())
        # Optional parts are None when off (not nn.Identity: no checkpoint key appears).
        enc, dec = cfg.encoder_embed_dim, cfg.decoder_embed_dim
        self.enc_conv_pos_embed = ConvPosEmbed(cfg, enc) if cfg.enc_conv_pos else None
        saved = getattr(cfg, "save_sine_tables", True)  # configs of released checkpoints lack it
        self.enc_sine_pos_embed = (SinusoidalPositionalEncoding(enc, cfg.max_token_length, saved)
                                   if cfg.enc_sine_pos else None)
        self.encoder = TransformerEncoder(cfg)

        self.post_enc_proj = nn.Linear(enc, dec) if cfg.use_post_enc_proj else None
        self.decoder_mask_emb = nn.Parameter(torch.FloatTensor(dec).uniform_())
        self.dec_conv_pos_embed = ConvPosEmbed(cfg, dec) if cfg.dec_conv_pos else None
        self.dec_sine_pos_embed = (SinusoidalPositionalEncoding(dec, cfg.max_token_length, saved)
                                   if cfg.dec_sine_pos else None)
        self.decoder = TransformerEncoder(cfg, decoder=True)

        self.final_proj_reconstruction = nn.Linear(cfg.decoder_embed_dim, patch_dim)
        self.final_proj_classification = nn.Linear(cfg.decoder_embed_dim, patch_dim)
        if getattr(cfg, "compile_blocks", False):
            # Blocks, not the whole model: masking and gathers stay eager, and the token
            # count varies between batches, hence dynamic shapes.
            for block in (*self.encoder.layers, *self.decoder.layers):
                block.compile(dynamic=True)

    @classmethod
    def build_model(cls, cfg: MAE_AST_Config, task) -> "MAE_AST":
        return cls(cfg, task.cfg)

    @property
    def chan_blocks(self) -> int:
        return self.grid.chan_blocks

    def check_input(self, source: torch.Tensor) -> None:
        if source.dim() != 3:
            raise ValueError(f"expected features of shape (B, frames, {self.feature_spec.width}), "
                             f"got shape {tuple(source.shape)}")
        self.feature_spec.check_width(source.shape[-1])

    def forward_mask(self, B: int, T: int, padding_mask: torch.Tensor | None, device) -> MaskPlan:
        return compute_mask(self.mask_type, B, T, device=device, chan_blocks=self.chan_blocks,
                            padding_mask=padding_mask, **self.mask_args)

    def forward_encoder(
        self, x: torch.Tensor, plan: MaskPlan | None, padding_mask: torch.Tensor | None,
        output_layer: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        if plan is not None:
            x = torch.gather(x, 1, plan.keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            if padding_mask is not None:
                padding_mask = torch.gather(padding_mask, 1, plan.keep)
        layer = None if output_layer is None else output_layer - 1
        x, hidden_states = self.encoder(x, padding_mask=padding_mask, layer=layer)
        return x, padding_mask, hidden_states

    def forward_decoder(
        self, x: torch.Tensor, plan: MaskPlan, padding_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.post_enc_proj is not None:
            x = self.post_enc_proj(x)
        B, T, C = plan.mask.shape[0], plan.mask.shape[1], x.shape[-1]
        full = self.decoder_mask_emb.to(x.dtype).expand(B, T, C)
        full = full.scatter(1, plan.keep.unsqueeze(-1).expand(-1, -1, C), x)
        full = self.add_positions(full, padding_mask, "dec")
        return self.decoder(full, padding_mask=padding_mask)

    def add_positions(self, x: torch.Tensor, padding_mask: torch.Tensor | None, which: str) -> torch.Tensor:
        if which == "enc":
            return add_positions(x, padding_mask, self.enc_conv_pos_embed, self.enc_sine_pos_embed)
        return add_positions(x, padding_mask, self.dec_conv_pos_embed, self.dec_sine_pos_embed)

    def forward(
        self,
        source: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        mask: bool = True,
        features_only: bool = False,
        output_layer: int | None = None,
        is_decoder_finetune: bool = False,
        is_input_prepatched: bool = False,
    ) -> dict[str, Any]:
        if not (mask or is_decoder_finetune or is_input_prepatched):
            return self.forward_features(source, padding_mask, output_layer, first_frame_rule=True)
        patches = source if is_input_prepatched else self.patchify(source)
        B, T, _ = patches.shape
        # A given mask is never inspected on the host (a device sync every step); batches
        # without padding pass None, which keeps attention on its unmasked fast path.
        token_pad = None
        if padding_mask is not None and not is_input_prepatched:
            token_pad = self.grid.token_padding_mask((~padding_mask).sum(dim=-1), T)

        features = self.post_extract_proj(patches)
        if mask:
            features = self.dropout_input(features)
        features = self.add_positions(features, token_pad, "enc")

        plan = self.forward_mask(B, T, token_pad, features.device) if mask else None
        x, enc_pad, encoder_hidden = self.forward_encoder(features, plan, token_pad, output_layer)
        if enc_pad is None:
            enc_pad = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)

        if not is_decoder_finetune and (features_only or not mask):
            return {"x": x, "padding_mask": enc_pad, "features": features, "hidden_states": encoder_hidden}
        if plan is None:  # decoder states without masking: nothing is masked
            plan = MaskPlan.from_mask(torch.zeros(B, T, dtype=torch.bool, device=x.device), T)

        y, decoder_hidden = self.forward_decoder(x, plan, token_pad)
        full_pad = token_pad if token_pad is not None else torch.zeros(B, T, dtype=torch.bool, device=y.device)
        if is_decoder_finetune:
            return {"x": y, "padding_mask": full_pad, "features": features,
                    "hidden_states": encoder_hidden + decoder_hidden}

        index = plan.masked.unsqueeze(-1)
        y_masked = torch.gather(y, 1, index.expand(-1, -1, y.shape[-1]))
        # HuBERT's key names (the original's), though these are (B, masked, kt*kc) tensors.
        return {
            "logit_m_list_recon": self.final_proj_reconstruction(y_masked),
            "logit_m_list_class": self.final_proj_classification(y_masked),
            "target_m_list": torch.gather(patches, 1, index.expand(-1, -1, patches.shape[-1])),
            "padding_mask": full_pad,
            "mask": plan.mask,
            "mask_ratio": plan.mask_ratio,
        }

    def forward_features(
        self, source: torch.Tensor, padding_mask: torch.Tensor | None = None,
        output_layer: int | None = None, augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        first_frame_rule: bool = False,
    ) -> dict[str, Any]:
        """The one unmasked encoder path (every downstream use): ``x`` (B, tokens, dim),
        ``hidden_states`` (each layer run), ``padding_mask`` (B, tokens; True = padding),
        ``features`` (projected patches plus positions: the encoder's input). Tokens are whole-frame valid unless
        ``first_frame_rule`` (``PatchGrid.token_padding_mask``), which ``forward`` uses."""
        features, token_pad = self.embed(source, padding_mask, augment, whole_tokens=not first_frame_rule)
        x, _, hidden_states = self.forward_encoder(features, None, token_pad, output_layer)
        if token_pad is None:
            token_pad = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        return {"x": x, "hidden_states": hidden_states, "padding_mask": token_pad, "features": features}

    def wavs_to_fbank(self, wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of mono [-1, 1] waveforms at the spec's rate, on the model's device,
        zero-padded, with the frame padding mask (True = padding)."""
        return self.feature_spec.batch(wavs, self.grid.min_frames, next(self.parameters()).device)

    def extract_layers(
        self, inputs: list[torch.Tensor] | torch.Tensor, padding_mask: torch.Tensor | None = None,
        time_aligned: bool = True, output_layer: int | None = None,
    ) -> dict[str, Any]:
        """Encoder features of waveforms (list of 1-D tensors) or of ``(B, frames, columns)``:
        ``last_hidden_state``, ``hidden_states`` (layers 1..L, no input embedding) and
        ``padding_mask``. ``time_aligned`` averages a time step's tokens over the channel
        blocks (one vector per ``ast_kernel_stride_time`` frames); ``output_layer`` (1-based)
        stops the encoder there."""
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 3:
            source = inputs
        else:
            source, padding_mask = self.wavs_to_fbank(inputs)
        out = self.forward_features(source, padding_mask, output_layer)
        states, pad = out["hidden_states"], out["padding_mask"]
        if time_aligned:
            states, pad = self.grid.time_align(states, pad)
        return {"last_hidden_state": states[-1], "hidden_states": states, "padding_mask": pad}

    def extract_features(
        self, source: torch.Tensor, padding_mask: torch.Tensor | None = None, mask: bool = False,
        ret_conv: bool = False, output_layer: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        res = self.forward(source, padding_mask=padding_mask, mask=mask, features_only=True,
                           output_layer=output_layer)
        return (res["features"] if ret_conv else res["x"]), res["padding_mask"]

    def get_logits(self, net_output: dict) -> list[torch.Tensor]:
        return [net_output["logit_m_list_recon"].float(), net_output["logit_m_list_class"].float()]

    def get_targets(self, net_output: dict, is_masked: bool = True) -> torch.Tensor:
        return net_output["target_m_list"].float()

    def get_extra_losses(self, net_output: dict) -> tuple[list, list]:
        return [], []

    def remove_pretraining_modules(self) -> None:
        self.final_proj_reconstruction = None
        self.final_proj_classification = None
