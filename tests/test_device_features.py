"""``task.features_on_device``: workers only decode, and the batch's features computed
from its waveforms (batched resampling + fbank) equal the per-clip features the
workers would have computed, cropped the same way."""

import pytest
import torch
from fairseq import utils

from conftest import DEMO, hydra_train, logged
from mae_ast.data import MAE_AST_Dataset
from mae_ast.data.features import FeatureSpec
from mae_ast.data.mae_ast_dataset import features_from_waveforms


def _both_batches(indices, spec=None, **kw):
    ds = MAE_AST_Dataset(str(DEMO / "train.tsv"), min_frames=16, feature_spec=spec, **kw)
    ds.set_epoch(3)
    per_clip = ds.collater([ds[i] for i in indices])
    ds.decode_only = True
    items = [ds[i] for i in indices]
    assert all(item["source"].dim() == 1 and "rate" in item for item in items)
    waves = ds.collater(items)
    return ds, per_clip, features_from_waveforms(waves, ds.feature_spec), waves


def _rates(ds, indices):
    ds.decode_only = True
    return sorted({ds[i]["rate"] for i in indices})


@pytest.mark.parametrize("pad_audio", [False, True])
def test_device_features_equal_the_per_clip_features(pad_audio):
    indices = list(range(12))  # flac at 16 and 44.1 kHz (stereo), wav, Opus/AAC mkv
    ds, per_clip, device, _ = _both_batches(indices, pad_audio=pad_audio)
    assert len(_rates(ds, indices)) >= 2
    a, b = per_clip["net_input"], device["net_input"]
    assert a["source"].shape == b["source"].shape
    assert (a["source"] - b["source"]).abs().max() < 1e-4
    assert (a["padding_mask"] is None) == (b["padding_mask"] is None) == (not pad_audio)
    if pad_audio:
        assert torch.equal(a["padding_mask"], b["padding_mask"])
    assert torch.equal(per_clip["id"], device["id"])


def test_device_features_with_deltas():
    spec = FeatureSpec(deltas=True)
    _, per_clip, device, _ = _both_batches([0, 2, 5], spec=spec, pad_audio=True)
    a, b = per_clip["net_input"]["source"], device["net_input"]["source"]
    assert a.shape == b.shape and a.shape[-1] == 384
    assert (a - b).abs().max() < 1e-4


def test_waveforms_survive_fairseqs_half_precision_cast():
    """fairseq's fp16 mode halves every float tensor of a batch before train_step; the
    waveforms travel as int32 bits, so their fbank is the fp32 one."""
    _, _, device, waves = _both_batches([0, 1])
    halved = utils.apply_to_sample(lambda t: t.half() if t.dtype == torch.float32 else t, waves)
    again = features_from_waveforms(halved, FeatureSpec())
    assert torch.equal(again["net_input"]["source"], device["net_input"]["source"])


@pytest.mark.slow
def test_training_with_features_on_device_logs_the_same_losses(tmp_path):
    """Through fairseq-hydra-train (a dataloader worker, validation included): the same
    seed gives the same losses whether workers or the task compute the features."""
    from test_reliability import TINY

    losses = []
    for flag in ("false", "true"):
        run = tmp_path / flag
        proc = hydra_train(run, *TINY, "optimization.max_update=3", "dataset.max_tokens=400000",
                           "dataset.num_workers=1", "dataset.validate_interval=1", "task.mask_type=chunk_mask",
                           f"task.features_on_device={flag}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        train, valid = logged(run, "train_inner"), logged(run, "valid")
        losses.append(([r["loss"] for r in train], [r["valid_loss"] for r in valid]))
    assert losses[0] == losses[1] and len(losses[0][0]) == 3
