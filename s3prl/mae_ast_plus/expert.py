"""s3prl upstream for MAE-AST checkpoints (ours and the released ones).

Follows s3prl's upstream interface: a list of 16 kHz waveforms in, a dict with
``last_hidden_state`` and ``hidden_states`` out. Differences from the original expert:
- no hard-coded path, no torchaudio, no fairseq needed (``mae_ast.load``);
- patch models return time-aligned states: the tokens of one time step (8 channel
  blocks for 16x16 patches) are averaged, so every key has one frame per
  ``ast_kernel_stride_time`` x 10 ms and ``get_downsample_rates`` is right for patch and
  frame models alike (the original returned 320 for both). Utterance-level mean
  pooling, the paper's SUPERB setup, is unchanged by this: the mean of the means of
  equal-size groups is the overall mean;
- ``hidden_states`` are the outputs of encoder layers 1..12, as the original expert
  returned them (no input embedding first, unlike other s3prl upstreams), so weighted
  sums over layers see the same 12 states as in the paper's SUPERB runs;
- features are computed as the checkpoint was trained (its feature spec: deltas too),
  and waveforms go through the model's input contract (stereo averaged, int16-scale or
  NaN refused with a message);
- each clip has exactly ``round(len(wav) / downsample_rate)`` rows, the count s3prl's
  ``Featurizer`` keeps: Kaldi framing gives up to two fewer whole tokens, so the last
  valid row is repeated into those places instead of leaving padding rows there (which
  the Featurizer would keep and mean-pool into the clip). A clip padded in a batch then
  gives the same trimmed features as alone.
"""

from __future__ import annotations

import torch

import mae_ast

try:
    from s3prl.upstream.interfaces import UpstreamBase
except ImportError:  # usable as a plain module outside s3prl
    UpstreamBase = torch.nn.Module



class UpstreamExpert(UpstreamBase):
    def __init__(self, ckpt: str, is_decoder_finetune: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = mae_ast.load(ckpt, device="cpu")
        self.model.train(False)
        if is_decoder_finetune:  # accepted for the original's signature; never silently ignored
            raise ValueError("is_decoder_finetune is not supported by this upstream (encoder states only); "
                             "call the model with is_decoder_finetune=True directly for decoder states")
        self.sample_rate = getattr(self.model.task_cfg, "sample_rate", 16000)
        if self.sample_rate != 16000:
            raise ValueError(f"{ckpt}: trained at {self.sample_rate} Hz; s3prl feeds 16 kHz audio")

    def get_downsample_rates(self, key: str) -> int:
        return self.model.grid.stride_time * self.model.feature_spec.shift_samples

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        out = self.model.extract_layers(wavs)
        rate = self.get_downsample_rates("hidden_states")
        rows = [max(1, round(len(w) / rate)) for w in wavs]
        valid = (~out["padding_mask"]).sum(dim=1).tolist()
        hidden = [fill_to_rows(h, valid, rows) for h in out["hidden_states"]]
        return {"last_hidden_state": hidden[-1], "hidden_states": hidden}


def fill_to_rows(states: torch.Tensor, valid: list[int], rows: list[int]) -> torch.Tensor:
    """``(B, T, D)`` with ``valid[b]`` real rows per clip -> ``(B, max(rows), D)`` whose
    rows ``valid[b]..rows[b]-1`` repeat clip b's last valid row (rows past ``rows[b]``
    are zero: s3prl cuts them off)."""
    B, _, D = states.shape
    out = states.new_zeros(B, max(rows), D)
    for b in range(B):
        n = min(valid[b], rows[b])
        out[b, :n] = states[b, :n]
        if rows[b] > n:
            out[b, n : rows[b]] = states[b, n - 1]
    return out
