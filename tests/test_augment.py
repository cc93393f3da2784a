"""Fine-tuning augmentations (mae_ast.data.augment) and class-balanced sampling (mae_ast.data.sampling)."""

import numpy as np
import pytest
import torch

from conftest import DEMO
from mae_ast.data import MAE_AST_Dataset
from mae_ast.data.augment import (
    add_noise,
    apply_mixup,
    draw_mixup,
    spec_augment,
    time_roll,
)
from mae_ast.data.mae_ast_dataset import crop_batch
from mae_ast.data.sampling import label_counts, sample_weights, weighted_indices


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _positive_batch(b: int, frames: int, bins: int, seed: int = 0) -> torch.Tensor:
    """Values in [1, 2): any zero in an output was written by a mask."""
    return torch.rand(b, frames, bins, generator=gen(seed)) + 1.0


def _band(flags: torch.Tensor) -> tuple[int, int]:
    """(start, width) of the True entries of a 1-D bool tensor, asserting they are contiguous."""
    idx = torch.nonzero(flags).flatten()
    if idx.numel() == 0:
        return -1, 0
    start, width = int(idx[0]), idx.numel()
    assert int(idx[-1]) == start + width - 1, f"band not contiguous: {idx.tolist()}"
    return start, width


# ----------------------------------------------------------------------------- SpecAugment


def test_spec_augment_one_frequency_and_one_time_band_per_clip():
    b, frames, bins, freqm, timem = 2000, 64, 32, 8, 12
    x = _positive_batch(b, frames, bins)
    out = spec_augment(x, freqm, timem, generator=gen(1))
    assert out.shape == x.shape
    assert not torch.equal(out, x) and (x > 0).all(), "input changed in place or no mask drawn"
    f_starts, f_widths, t_starts, t_widths = [], [], [], []
    for clip_in, clip in zip(x, out):
        zero = clip == 0
        f_start, f_width = _band(zero.all(dim=0))  # bins zeroed in every frame
        t_start, t_width = _band(zero.all(dim=1))  # frames zeroed in every bin
        # Every zero belongs to one of the two bands, and everything else is untouched.
        bands = zero.all(dim=0)[None, :] | zero.all(dim=1)[:, None]
        assert torch.equal(zero, bands)
        assert torch.equal(clip[~bands], clip_in[~bands])
        f_starts.append(f_start)
        f_widths.append(f_width)
        t_starts.append(t_start)
        t_widths.append(t_width)
    f_widths, t_widths = np.array(f_widths), np.array(t_widths)
    # Widths uniform in [0, freqm) / [0, timem): all values occur, none at or above the bound.
    assert set(f_widths) == set(range(freqm)) and set(t_widths) == set(range(timem))
    assert abs(f_widths.mean() - (freqm - 1) / 2) < 0.3 and abs(t_widths.mean() - (timem - 1) / 2) < 0.4
    # Bands reach both edges (start uniform over every position where the band fits).
    f_ends = np.array(f_starts) + f_widths
    t_ends = np.array(t_starts) + t_widths
    assert 0 in f_starts and bins in f_ends[f_widths > 0] and 0 in t_starts and frames in t_ends[t_widths > 0]


def test_spec_augment_single_clip_fill_and_determinism():
    x = _positive_batch(1, 50, 20)[0]
    a = spec_augment(x, 10, 10, generator=gen(7), fill=-3.0)
    b = spec_augment(x, 10, 10, generator=gen(7), fill=-3.0)
    c = spec_augment(x, 10, 10, generator=gen(8), fill=-3.0)
    assert a.shape == x.shape and torch.equal(a, b)
    assert set(a[a != x].tolist()) <= {-3.0}
    assert not torch.equal(a, c)


def test_spec_augment_disabled_is_identity():
    x = _positive_batch(4, 30, 16)
    assert torch.equal(spec_augment(x, 0, 0, generator=gen(0)), x)
    only_time = spec_augment(x, 0, 6, generator=gen(0))
    assert not (only_time == 0).all(dim=1).any(), "a frequency band appeared with freqm=0"


# ----------------------------------------------------------------------------- mixup


def _labels(b: int, c: int, seed: int) -> torch.Tensor:
    y = (torch.rand(b, c, generator=gen(seed)) < 0.2).float()
    y[:, 0] = 1.0  # every clip has at least one label
    return y


def test_mixup_prob_zero_is_identity():
    x, y = _positive_batch(16, 20, 8), _labels(16, 5, 1)
    draw = draw_mixup(16, prob=0.0, generator=gen(0))
    x2, y2 = apply_mixup(x, y, draw)
    lam = draw.lam.float()
    assert x2.shape == x.shape and y2.shape == y.shape and lam.shape == (16,)
    assert torch.equal(x2, x) and torch.equal(y2, y) and (lam == 1).all()


def test_mixup_matches_recorded_partner_and_preserves_label_mass():
    b = 32
    x, y = _positive_batch(b, 20, 8), _labels(b, 6, 2)
    draw = draw_mixup(b, prob=1.0, generator=gen(3))
    lam = draw.lam.float()
    assert draw.mixed.all() and (draw.partner != torch.arange(b)).all() and (lam < 1).all()
    x2, y2 = apply_mixup(x, y, draw)
    j, l3 = draw.partner, lam.view(-1, 1, 1)
    torch.testing.assert_close(x2, l3 * x + (1 - l3) * x[j])
    torch.testing.assert_close(y2, lam[:, None] * y + (1 - lam[:, None]) * y[j])
    # Label mass: each row of y' carries lam of its own labels and 1 - lam of its partner's.
    torch.testing.assert_close(y2.sum(1), lam * y.sum(1) + (1 - lam) * y[j].sum(1))


def test_mixup_lambda_is_beta_10_10_and_partners_uniform():
    n = 100_000
    draw = draw_mixup(n, prob=1.0, alpha=10.0, generator=gen(4))
    lam = draw.lam.numpy()
    assert abs(lam.mean() - 0.5) < 0.003
    assert abs(lam.std() - np.sqrt(1 / 84)) < 0.002  # Beta(10, 10): var = 100 / (20^2 * 21)
    small = draw_mixup(n, prob=1.0, generator=gen(5))
    assert (small.partner != torch.arange(n)).all()
    draws = [draw_mixup(4, prob=0.3, generator=gen(s)) for s in range(3000)]
    mixed = torch.stack([d.mixed for d in draws])
    assert abs(mixed.float().mean().item() - 0.3) < 0.02
    offsets = torch.cat([(d.partner - torch.arange(4))[d.mixed] % 4 for d in draws])
    counts = torch.bincount(offsets, minlength=4).float()
    assert counts[0] == 0 and (abs(counts[1:] / counts.sum() - 1 / 3) < 0.03).all()


def test_mixup_deterministic_and_single_clip_batch_unmixed():
    x, y = _positive_batch(8, 10, 4), _labels(8, 3, 6)
    a, b, c = (draw_mixup(8, 0.5, generator=gen(s)) for s in (9, 9, 10))
    assert torch.equal(a.lam, b.lam) and torch.equal(a.partner, b.partner)
    assert not torch.equal(a.lam, c.lam)
    one = draw_mixup(1, prob=1.0, generator=gen(0))
    x1, _ = apply_mixup(x[:1], y[:1], one)
    assert torch.equal(x1, x[:1]) and one.lam.item() == 1.0


# ----------------------------------------------------------------------------- noise, roll, pad/crop


def test_add_noise_range_and_determinism():
    x = torch.zeros(200, 30, 10)
    out = add_noise(x, generator=gen(0))
    assert out.shape == x.shape and torch.equal(x, torch.zeros_like(x))
    assert (out >= 0).all() and (out < 0.1).all()
    per_clip_max = out.amax(dim=(1, 2))
    assert per_clip_max.max() > 0.09 and per_clip_max.min() < 0.01, "scale is not drawn per clip"
    assert torch.equal(add_noise(x[0], generator=gen(1)), add_noise(x[0], generator=gen(1)))
    assert add_noise(x[0], generator=gen(1)).shape == (30, 10)


def test_time_roll_shifts_in_range():
    max_shift = 4
    x = _positive_batch(500, 40, 6)
    out = time_roll(x, max_shift, generator=gen(0))
    shifts = []
    for clip_in, clip in zip(x, out):
        found = [s for s in range(-max_shift, max_shift + 1) if torch.equal(torch.roll(clip_in, s, 0), clip)]
        assert len(found) == 1
        shifts.append(found[0])
    assert set(shifts) == set(range(-max_shift, max_shift + 1))
    assert torch.equal(time_roll(x[0], 0, generator=gen(0)), x[0])
    assert torch.equal(time_roll(x[0], 3, generator=gen(2)), time_roll(x[0], 3, generator=gen(2)))


def test_crop_batch_pads_or_crops_and_masks_only_padding():
    """The one crop-and-pad of the collaters and the classifier's single window."""
    x = _positive_batch(1, 30, 5)[0]
    padded, mask = crop_batch([x], [30], [0], 50)
    assert padded.shape == (1, 50, 5) and mask.tolist() == [[False] * 30 + [True] * 20]
    assert torch.equal(padded[0, :30], x) and (padded[0, 30:] == 0).all()
    cropped, mask = crop_batch([x], [30], [4], 12)
    assert mask is None and torch.equal(cropped[0], x[4:16])
    same, mask = crop_batch([x], [30], [0], 30)
    assert mask is None and torch.equal(same[0], x)


def test_one_crop_rule_draws_every_offset_per_seed_epoch_and_clip():
    """Fine-tuning crops with the pretraining dataset's ``crop_start``: every offset in
    [0, frames - target] occurs, the same (seed, epoch, clip) gives the same one, another
    seed or epoch another draw; evaluation (no random crop) starts at frame 0."""
    ds = MAE_AST_Dataset(str(DEMO / "train.tsv"), seed=3)
    draws = [ds.crop_start(i, 30, 12) for i in range(300)]
    assert set(draws) == set(range(19)) and draws == [ds.crop_start(i, 30, 12) for i in range(300)]
    ds.epoch = 2
    assert [ds.crop_start(i, 30, 12) for i in range(300)] != draws
    other = MAE_AST_Dataset(str(DEMO / "train.tsv"), seed=4)
    assert [other.crop_start(i, 30, 12) for i in range(300)] != draws
    assert MAE_AST_Dataset(str(DEMO / "train.tsv"), random_crop=False).crop_start(0, 30, 12) == 0


# ----------------------------------------------------------------------------- weighted sampling


def test_sample_weights_hand_computed():
    rows = [[0], [0, 1], [0, 2], [2, 2], []]
    # Clips per label: 0 -> 3, 1 -> 1, 2 -> 2 (the repeated 2 counts once), 3 -> 0.
    np.testing.assert_array_equal(label_counts(rows, 4), [3, 1, 2, 0])
    w0, w1, w2 = 1000 / 3.01, 1000 / 1.01, 1000 / 2.01
    np.testing.assert_allclose(sample_weights(rows, 4), [w0, w0 + w1, w0 + w2, w2, 0.0], rtol=1e-12)
    with pytest.raises(ValueError):
        sample_weights([[4]], 4)


def test_weighted_indices_frequencies_follow_weights():
    weights = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 10.0])
    n = 200_000
    drawn = weighted_indices(weights, n, seed=1, epoch=1)
    assert drawn.shape == (n,) and drawn.dtype == np.int64
    freq = np.bincount(drawn, minlength=len(weights)) / n
    np.testing.assert_allclose(freq, weights / weights.sum(), atol=0.004)
    assert freq[4] == 0


def test_weighted_indices_deterministic_per_seed_and_epoch():
    weights = np.arange(1.0, 51.0)
    a = weighted_indices(weights, 1000, seed=3, epoch=2)
    assert np.array_equal(a, weighted_indices(weights, 1000, seed=3, epoch=2))
    assert not np.array_equal(a, weighted_indices(weights, 1000, seed=3, epoch=3))
    assert not np.array_equal(a, weighted_indices(weights, 1000, seed=4, epoch=2))
    assert not np.array_equal(a, weighted_indices(weights, 1000, seed=4, epoch=1))
    with pytest.raises(ValueError):
        weighted_indices(np.zeros(3), 10, seed=0, epoch=0)
