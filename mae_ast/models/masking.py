"""Token masking for MAE-AST pretraining (the types: ``task.mask_type``'s help), vectorised
over the batch, with the original code's semantics. Each type builds a ``(B, T)`` bool mask
with the same masked count per row, which ``MaskPlan`` turns into the index tensors encoder,
decoder and loss share. ``retain_spans`` keeps the spans it draws, so ``random_mask_prob=1.45``
masks ~24%, not the ~75% the original README says.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MASK_TYPES = ("retain_spans", "random_mask", "random_mask_batched", "chunk_mask")


@dataclass
class MaskPlan:
    mask: torch.Tensor  # (B, T) bool, True = masked
    keep: torch.Tensor  # (B, R) indices of retained tokens, increasing
    masked: torch.Tensor  # (B, M) indices of masked tokens, increasing

    @classmethod
    def from_mask(cls, mask: torch.Tensor, num_retained: int) -> MaskPlan:
        # A stable sort of the 0/1 mask lists retained tokens first, each group in
        # increasing index order: the order the original's loss used for masked tokens.
        order = torch.sort(mask.to(torch.int8), dim=1, stable=True).indices
        return cls(mask, order[:, :num_retained], order[:, num_retained:])

    @property
    def mask_ratio(self) -> float:
        return self.masked.shape[1] / self.mask.shape[1]


def num_retained_tokens(num_tokens: int, mask_prob: float) -> int:
    return max(1, int((1 - mask_prob) * num_tokens))


def random_mask(B: int, T: int, mask_prob: float, device: torch.device, batched: bool = False) -> torch.Tensor:
    R = num_retained_tokens(T, mask_prob)
    noise = torch.rand(1 if batched else B, T, device=device)
    keep = noise.argsort(dim=1)[:, :R]
    mask = torch.ones(keep.shape[0], T, dtype=torch.bool, device=device)
    mask.scatter_(1, keep, False)
    return mask.expand(B, T)


def chunk_mask(B: int, T: int, mask_prob: float, chan_blocks: int, device: torch.device) -> torch.Tensor:
    """SSAST chunks: random top-left tokens, each adding cells ``top + i + chan_blocks*j``
    (i, j < s; indices >= T dropped), until MORE than M tokens are covered; then the M
    lowest-indexed covered tokens are masked (the original sliced a Python set of ints,
    which iterates in increasing order). Vectorised with no host round trip: ``2T + 16``
    draws at once (~80 needed for 496 tokens), stopping at the first whose cumulative
    cover exceeds M; on the CPU the random stream is the host-side walk's."""
    M = T - num_retained_tokens(T, mask_prob)
    n = 2 * T + 16
    side = torch.randint(3, 6, (), device=device)
    tops = torch.randint(0, T, (n,), device=device)
    first = _first_cover(tops, side, chan_blocks, T)
    # Cover after draw k = #tokens first covered by a draw <= k; the walk stops at the
    # first k where it exceeds M (``stop`` = n when no draw gets there).
    counts = torch.zeros(n + 1, dtype=torch.int64, device=device).scatter_add_(0, first, torch.ones_like(first))
    stop = (counts[:n].cumsum(0) <= M).sum()
    union = (first <= stop) & (first < n)
    mask = union & (union.cumsum(0) <= M)
    # Should 2T + 16 draws not cover M tokens (astronomically unlikely), the lowest-indexed
    # uncovered tokens make up the count, so every row masks exactly M.
    short = M - union.sum()
    mask = mask | (~union & ((~union).cumsum(0) <= short))
    return mask.expand(B, T)


def _first_cover(tops: torch.Tensor, side: torch.Tensor, chan_blocks: int, T: int) -> torch.Tensor:
    """``(T,)``: the index of the first draw in ``tops`` whose ``side`` x ``side`` block
    covers each token, ``len(tops)`` for tokens no draw covers. The block side is a
    tensor, so the largest block (5 x 5) is laid out and cells beyond ``side`` dropped."""
    n, device = tops.shape[0], tops.device
    i = torch.arange(5, device=device)
    offsets = (i.view(-1, 1) + chan_blocks * i.view(1, -1)).flatten()
    inside = ((i.view(-1, 1) < side) & (i.view(1, -1) < side)).flatten()
    cells = tops.view(-1, 1) + offsets.view(1, -1)
    cells = torch.where(inside & (cells < T), cells, T)  # slot T collects dropped cells
    draw = torch.arange(n, device=device).view(-1, 1).expand_as(cells)
    first = torch.full((T + 1,), n, dtype=torch.int64, device=device)
    return first.scatter_reduce(0, cells.flatten(), draw.flatten(), reduce="amin")[:T]


def retain_spans_mask(
    B: int,
    T: int,
    mask_prob: float,
    mask_length: int = 10,
    padding_mask: torch.Tensor | None = None,
    selection: str = "static",
    other: float = 0.0,
    no_overlap: bool = False,
    min_space: int = 0,
) -> torch.Tensor:
    """wav2vec 2.0 spans (min_masks=2, equal count per row) marking RETAINED tokens. The
    static, overlapping case is vectorised with ``compute_mask_indices``'s distributions;
    other cases call fairseq's. On the CPU: the count per row decides shapes anyway."""
    if selection != "static" or no_overlap or (padding_mask is not None and bool(padding_mask.any())):
        from fairseq.data.data_utils import compute_mask_indices

        pad = None if padding_mask is None else padding_mask.cpu()
        retained = torch.from_numpy(
            compute_mask_indices(
                (B, T), pad, mask_prob, mask_length, selection, other,
                min_masks=2, no_overlap=no_overlap, min_space=min_space,
            )
        )
    else:
        retained = _static_spans(B, T, mask_prob, mask_length)
    if retained[0].sum() == 0:  # the original redrew; only possible for tiny T
        retained[:, 0] = True
    return ~retained


def _static_spans(B: int, T: int, mask_prob: float, span: int) -> torch.Tensor:
    # One span count for the batch, with probabilistic rounding (fairseq's default).
    num_spans = max(2, int(mask_prob * T / span + torch.rand(()).item()))
    start_range = T - span
    if start_range <= num_spans:  # fairseq shortens the span range likewise
        start_range = num_spans + 1
    if start_range > T:
        raise ValueError(f"retain_spans: {T} tokens are too few for {num_spans} spans")
    # Distinct random starts per row: the first num_spans of a random permutation.
    rank = torch.rand(B, start_range).argsort(dim=1).argsort(dim=1)
    starts = torch.zeros(B, T)
    starts[:, :start_range] = (rank < num_spans).float()
    # A token is covered when a start lies in the span before it (a sliding sum).
    covered = torch.nn.functional.conv1d(
        torch.nn.functional.pad(starts.unsqueeze(1), (span - 1, 0)), torch.ones(1, 1, span)
    ).squeeze(1)[:, :T] > 0
    # Equalise the count per row: keep a random subset of the min count in fuller rows.
    target = int(covered.sum(dim=1).min())
    noise = torch.where(covered, torch.rand(B, T), torch.full((B, T), 2.0))
    keep = noise.argsort(dim=1)[:, :target]
    out = torch.zeros(B, T, dtype=torch.bool)
    out.scatter_(1, keep, True)
    return out


def check_mask_type(mask_type: str) -> None:
    """Refuse a mask type ``compute_mask`` cannot draw (``MAE_AST`` checks its task's at build)."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"task.mask_type={mask_type!r} is not one of {MASK_TYPES}")


def compute_mask(
    mask_type: str,
    B: int,
    T: int,
    mask_prob: float,
    device: torch.device,
    chan_blocks: int = 1,
    padding_mask: torch.Tensor | None = None,
    mask_length: int = 10,
    selection: str = "static",
    other: float = 0.0,
    no_overlap: bool = False,
    min_space: int = 0,
) -> MaskPlan:
    """Draw a mask of ``mask_type`` for ``B`` clips of ``T`` tokens; the span settings are
    ``retain_spans_mask``'s (other types ignore them)."""
    check_mask_type(mask_type)
    if mask_type == "retain_spans":
        mask = retain_spans_mask(B, T, mask_prob, mask_length, padding_mask, selection, other, no_overlap,
                                 min_space).to(device)
        return MaskPlan.from_mask(mask, T - int(mask[0].sum()))
    if mask_type == "chunk_mask":
        mask = chunk_mask(B, T, mask_prob, chan_blocks, device)
    else:
        mask = random_mask(B, T, mask_prob, device, batched=mask_type == "random_mask_batched")
    return MaskPlan.from_mask(mask, num_retained_tokens(T, mask_prob))

