"""Where tokens sit on the ``(frames, columns)`` feature image. Tokens are ordered
time-block major, channel-block minor (``nn.Unfold``'s, as the original): ``t * chan_blocks + c``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchGrid:
    kernel_time: int
    kernel_chan: int
    stride_time: int
    stride_chan: int
    width: int  # feature columns per frame

    def __post_init__(self) -> None:
        for name in ("kernel_time", "kernel_chan", "stride_time", "stride_chan"):
            if getattr(self, name) < 1:
                raise ValueError(f"ast_{name.replace('kernel', 'kernel_size').replace('stride', 'kernel_stride')}"
                                 f" must be >= 1, got {getattr(self, name)}")
        if self.kernel_chan > self.width:
            raise ValueError(f"ast_kernel_size_chan={self.kernel_chan} exceeds the {self.width} feature columns")

    @classmethod
    def from_model_cfg(cls, cfg, width: int) -> PatchGrid:
        return cls(cfg.ast_kernel_size_time, cfg.ast_kernel_size_chan,
                   cfg.ast_kernel_stride_time, cfg.ast_kernel_stride_chan, width)

    @property
    def chan_blocks(self) -> int:
        return (self.width - self.kernel_chan) // self.stride_chan + 1

    @property
    def covered_columns(self) -> int:
        """Columns any patch reads: the rest (at the top) never reach the model."""
        return (self.chan_blocks - 1) * self.stride_chan + self.kernel_chan

    @property
    def patch_dim(self) -> int:
        return self.kernel_time * self.kernel_chan

    @property
    def overlapping(self) -> bool:
        return (self.stride_time, self.stride_chan) != (self.kernel_time, self.kernel_chan)

    @property
    def min_frames(self) -> int:
        """A clip needs one full patch in time to make a token."""
        return self.kernel_time

    def time_steps(self, frames: int) -> int:
        return 0 if frames < self.kernel_time else (frames - self.kernel_time) // self.stride_time + 1

    def num_tokens(self, frames: int) -> int:
        return self.time_steps(frames) * self.chan_blocks

    def warn_unused_columns(self) -> None:
        unused = self.width - self.covered_columns
        if unused:
            logger.warning(
                f"patches of {self.kernel_chan} columns every {self.stride_chan} cover {self.covered_columns} "
                f"of the {self.width} feature columns: the top {unused} never reach the model "
                f"(choose ast_kernel_size_chan/stride so that they tile {self.width})"
            )

    def patchify(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, frames, width)`` -> ``(B, tokens, kernel_time * kernel_chan)``, as ``nn.Unfold``."""
        kt, kc, st, sc = self.kernel_time, self.kernel_chan, self.stride_time, self.stride_chan
        if self.overlapping:
            return F.unfold(image.unsqueeze(1), (kt, kc), stride=(st, sc)).transpose(1, 2)
        B, nt, nc = image.shape[0], image.shape[1] // kt, image.shape[2] // kc
        x = image[:, : nt * kt, : nc * kc].reshape(B, nt, kt, nc, kc)
        return x.permute(0, 1, 3, 2, 4).reshape(B, nt * nc, kt * kc)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """The inverse of ``patchify`` over the frames the tokens cover: overlaps averaged,
        columns no patch covers NaN."""
        B, T, _ = tokens.shape
        steps = T // self.chan_blocks
        frames = (steps - 1) * self.stride_time + self.kernel_time
        size = (frames, self.width)
        kernel, stride = (self.kernel_time, self.kernel_chan), (self.stride_time, self.stride_chan)
        summed = F.fold(tokens.transpose(1, 2), size, kernel, stride=stride)
        counts = F.fold(torch.ones_like(tokens[:1]).transpose(1, 2), size, kernel, stride=stride)
        return (summed / counts).masked_fill(counts == 0, float("nan"))[:, 0]

    def token_padding_mask(self, valid_frames: torch.Tensor, num_tokens: int,
                           whole_tokens: bool = False) -> torch.Tensor:
        """``(B,)`` valid frame counts -> ``(B, num_tokens)`` bool, True = padding. With
        ``whole_tokens`` a token is valid when all its frames are (a clip padded in a batch
        gives the tokens it gives alone); else when its first frame is (the original's rule)."""
        steps = num_tokens // self.chan_blocks
        start = torch.arange(steps, device=valid_frames.device) * self.stride_time
        reach = start + (self.kernel_time if whole_tokens else 1)
        pad = reach.unsqueeze(0) > valid_frames.view(-1, 1)
        return pad.repeat_interleave(self.chan_blocks, dim=1)

    def time_align(self, states: list[torch.Tensor], padding_mask: torch.Tensor
                   ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each time step's tokens averaged over the channel blocks (one vector per
        ``stride_time`` frames), and the padding of those steps."""
        nc = self.chan_blocks
        return [h.reshape(h.shape[0], -1, nc, h.shape[-1]).mean(dim=2) for h in states], padding_mask[:, ::nc]
