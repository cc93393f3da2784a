"""The encoder's input steps, one code for the package's ``MAE_AST`` and transformers'
``MAEASTModel`` (shipped: torch only). Both hold the modules under the same names, their
checkpoint keys (``grid``, ``batch_norm``, ``post_extract_proj``, ``enc_conv_pos_embed``,
``enc_sine_pos_embed``), and check the input's shape with their own advice (``check_input``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data.fbank import short_of_one_patch
from .positions import add_positions


class EncoderInput:
    def normalize(self, source: torch.Tensor) -> torch.Tensor:
        """AST-style normalisation of ``(B, frames, columns)``: mean 0, std 0.5."""
        return self.batch_norm(source.unsqueeze(1)).squeeze(1) * 0.5

    def patchify(self, source: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> torch.Tensor:
        """``(B, frames, columns)`` -> ``(B, tokens, kt*kc)``: checked, normalised, then ``augment``ed."""
        self.check_input(source)
        short = short_of_one_patch(source.shape[1], self.grid.min_frames)
        if short:
            raise ValueError(f"input: {short}")
        x = self.normalize(source)
        return self.grid.patchify(x if augment is None else augment(x))

    def embed(self, source: torch.Tensor, frame_padding: torch.Tensor | None,
              augment: Callable[[torch.Tensor], torch.Tensor] | None = None, whole_tokens: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoder's input ``(B, tokens, dim)``: projected patches plus positions; and its
        token padding (True = padding; ``PatchGrid.token_padding_mask``), None without ``frame_padding``."""
        patches = self.patchify(source, augment)
        pad = (None if frame_padding is None  # its contents are never read on the host
               else self.grid.token_padding_mask((~frame_padding).sum(dim=-1), patches.shape[1], whole_tokens))
        x = add_positions(self.post_extract_proj(patches), pad, self.enc_conv_pos_embed, self.enc_sine_pos_embed)
        return x, pad
