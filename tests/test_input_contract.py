"""One feature definition, one input contract: every path computes the features a
checkpoint was trained on, and bad input is refused with a message, never used."""

import dataclasses
import logging

import numpy as np
import pytest
import torch

import mae_ast
from conftest import make_batch, task_cfg, tiny_model
from mae_ast.data.fbank import compute_deltas
from mae_ast.data.features import FeatureSpec
from mae_ast.data.fbank import fbank


def save_checkpoint(model, path, **task):
    cfg = {"model": dataclasses.asdict(model.cfg),
           "task": {"feature_type": "fbank", "feature_dim": 128, "sample_rate": 16000,
                    "mask_type": "chunk_mask", **task}}
    torch.save({"cfg": cfg, "model": model.state_dict()}, path)
    return str(path)


def speechlike(seconds, seed=0, rate=16000):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * t * (1 + 0.1 * torch.sin(3 * t)))
    return tone + 0.02 * torch.randn(len(t), generator=g)


@pytest.fixture(scope="module")
def deltas_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = tiny_model(kt=16, kc=16, task=task_cfg("chunk_mask", deltas=True))
    return save_checkpoint(model, tmp_path_factory.mktemp("deltas") / "deltas.pt", deltas=True)


def test_feature_spec_computes_fbank_and_deltas_as_training_did():
    wav = speechlike(1.0)
    plain = fbank(wav)
    spec = FeatureSpec(deltas=True)
    feats = spec.compute(wav)
    d1 = compute_deltas(plain)
    assert feats.shape == (plain.shape[0], 384) and spec.width == 384
    assert torch.equal(feats, torch.cat([plain, d1, compute_deltas(d1)], dim=1))
    assert spec.frames(len(wav)) == plain.shape[0] == 98
    assert spec.frames(399) == 0 and spec.samples_for_frames(16) == 400 + 15 * 160


def test_deltas_checkpoint_gets_deltas_in_extract_layers(deltas_checkpoint):
    """Item 1: a 4.96 s clip gave 10 rows (128 columns regrouped as 24 blocks); 30 now."""
    model = mae_ast.load(deltas_checkpoint, device="cpu")
    assert model.feature_spec.width == 384 and model.chan_blocks == 24
    wav = speechlike(4.96)
    out = model.extract_layers([wav])
    assert out["last_hidden_state"].shape[1] == (FeatureSpec().frames(len(wav)) // 16) == 30
    # Same as running the model on features computed with deltas by hand.
    feats = FeatureSpec(deltas=True).compute(wav)[None]
    with torch.no_grad():
        ref = model.forward_features(feats)["x"]
    assert torch.allclose(out["last_hidden_state"], ref.reshape(1, 30, 24, -1).mean(2), atol=1e-5)


def test_input_of_another_width_is_refused_naming_both_widths(deltas_checkpoint):
    """Item 2: 128 columns given to a model trained on 384 used to pass, with an all-False
    token padding mask (padded clips attended to padding)."""
    model = mae_ast.load(deltas_checkpoint, device="cpu")
    x, pad = make_batch(2, 200), torch.zeros(2, 200, dtype=torch.bool)
    pad[1, 120:] = True
    with pytest.raises(ValueError, match=r"input has 128 feature columns.*expects 384 columns \(128 mel bins"):
        model(x, padding_mask=pad, mask=False, features_only=True)
    with pytest.raises(ValueError, match="128 feature columns"):
        model.extract_layers(x, padding_mask=pad)


def test_padding_mask_uses_the_models_own_grid():
    """Item 2 (positive side): with deltas the grid has 24 channel blocks, and the token
    padding mask marks the padded clip's tokens (it was all False)."""
    model = tiny_model(kt=16, kc=16, task=task_cfg(deltas=True)).eval()
    x, pad = make_batch(2, 160, bins=384), torch.zeros(2, 160, dtype=torch.bool)
    pad[1, 80:] = True
    out = model(x, padding_mask=pad, mask=False, features_only=True)
    token_pad = out["padding_mask"].reshape(2, 10, 24)
    assert not token_pad[0].any() and not token_pad[1, :5].any() and token_pad[1, 5:].all()


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_stereo_waveform_is_averaged_to_mono(layout, caplog):
    """Item 3: (2, N) or (N, 2) used to be flattened into one clip twice as long."""
    model = tiny_model().eval()
    left, right = speechlike(1.0, seed=1), speechlike(1.0, seed=2) * 0.5
    stereo = torch.stack([left, right]) if layout == "channels_first" else torch.stack([left, right], dim=1)
    with caplog.at_level(logging.WARNING), torch.no_grad():
        got = model.extract_layers([stereo])["last_hidden_state"]
        ref = model.extract_layers([(left + right) / 2])["last_hidden_state"]
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-6)
    assert any("averaged to mono" in r.message for r in caplog.records)


BAD_CLIPS = [
    (lambda w: (w * 32767).round(), "not on the \\[-1, 1\\] scale"),
    (lambda w: (w * 32767).to(torch.int16), "dtype torch.int16 is not float"),
    (lambda w: torch.where(torch.arange(len(w)) == 5, torch.tensor(float("nan")), w), "NaN or inf"),
    (lambda w: w[:0], "empty waveform"),
    (lambda w: w[:1000], "shorter than one patch"),
    (lambda w: torch.stack([w, w, w]).reshape(3, 4, -1), "expected a 1-D mono waveform"),
]


@pytest.mark.parametrize("bad,message", BAD_CLIPS)
def test_bad_waveforms_are_refused_with_a_message(bad, message):
    """Item 7 and 17: wrong scale, int16, NaN, empty, too short, wrong rank."""
    model = tiny_model().eval()
    wav = speechlike(1.0)
    with pytest.raises(ValueError, match=message):
        model.extract_layers([wav, bad(wav)])


@pytest.mark.parametrize("bad,message", BAD_CLIPS[:4] + [
    (lambda w: (w * 3).round().numpy().astype(np.int16), "int16 is not float"),
    (lambda w: (w * 30 / w.abs().max()).round(), "peak amplitude 30 is not on the"),
])
def test_the_exported_feature_extractor_refuses_the_same_clips(bad, message):
    """The HF extractor keeps the package's contract (one check, ``fbank.check_clip``): a quiet
    int16 clip and integer samples stored as float are refused, not read as loud audio."""
    pytest.importorskip("transformers")
    from mae_ast.hf.feature_extraction import MAEASTFeatureExtractor
    extractor, wav = MAEASTFeatureExtractor(), speechlike(1.0)
    assert extractor([wav.numpy(), wav.tolist()], sampling_rate=16000)["input_values"].shape[0] == 2
    with pytest.raises(ValueError, match="waveform 1: .*" + message):
        extractor([wav, bad(wav)], sampling_rate=16000)


@pytest.mark.parametrize("inputs,message", [
    ([], "non-empty list"),
    (torch.zeros(16000), "wrap clips in a list"),
    (np.zeros(16000, dtype=np.float32), "wrap clips in a list"),
    (torch.zeros(2, 16000), "wrap clips in a list"),
    (["a.wav"], "expected a torch tensor or numpy array, got str"),
])
def test_wrong_container_is_refused_before_the_model(inputs, message):
    """Item 17: these used to fail inside batchnorm ("expected 4D input")."""
    with pytest.raises(ValueError, match=message):
        tiny_model().eval().extract_layers(inputs)


def test_numpy_waveforms_are_accepted_like_tensors():
    model = tiny_model().eval()
    wav = speechlike(1.0)
    with torch.no_grad():
        a = model.extract_layers([wav.numpy()])["last_hidden_state"]
        b = model.extract_layers([wav])["last_hidden_state"]
    assert torch.equal(a, b)


@pytest.mark.parametrize("kt,st", [(16, 16), (16, 10), (2, 2), (4, 3)])
def test_clip_padded_in_a_batch_equals_the_clip_alone(kt, st):
    """Item 5: with overlapping patches (kernel 16, stride 10) a token spanning valid and
    padding frames counted as valid (20 rows in a batch, 19 alone)."""
    kc = 128 if kt <= 4 else 16
    torch.manual_seed(0)
    model = tiny_model(kt=kt, kc=kc, st=st).eval()
    long, short = speechlike(3.0), speechlike(1.95, seed=3)
    with torch.no_grad():
        both = model.extract_layers([long, short])
        alone = model.extract_layers([short])
    n = alone["last_hidden_state"].shape[1]
    assert n == model.grid.time_steps(FeatureSpec().frames(len(short)))
    assert int((~both["padding_mask"][1]).sum()) == n
    for h_both, h_alone in zip(both["hidden_states"], alone["hidden_states"]):
        assert (h_both[1, :n] - h_alone[0]).abs().max() < 1e-4


def test_random_mask_prob_is_checked_at_build_with_the_valid_range():
    """Item 11: random_mask_prob=0 used to end in an IndexError in the criterion."""
    with pytest.raises(ValueError, match=r"random_mask_prob=0.0: random_mask .* \(0, 1\)"):
        tiny_model(random_mask_prob=0.0)
    with pytest.raises(ValueError, match=r"random_mask_prob=1.5"):
        tiny_model(mask_type="chunk_mask", random_mask_prob=1.5)
    with pytest.raises(ValueError, match="retain_spans needs a span probability > 0"):
        tiny_model(mask_type="retain_spans", kt=2, kc=128, random_mask_prob=0.0)
    tiny_model(mask_type="retain_spans", kt=2, kc=128, random_mask_prob=1.45)  # the seed's value builds


def test_patches_that_leave_columns_unused_are_warned_about(caplog):
    """Item 15: kernel 48 on 128 bins trains on 96 of them without a word."""
    with caplog.at_level(logging.WARNING):
        model = tiny_model(kt=16, kc=48)
    assert model.grid.covered_columns == 96
    assert any("cover 96 of the 128 feature columns" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        tiny_model(kt=16, kc=16)
    assert not any("feature columns" in r.message for r in caplog.records)


def test_unpatchify_inverts_patchify_with_and_without_overlap():
    from mae_ast.models.patch_grid import PatchGrid

    x = torch.randn(2, 100, 128)
    for grid in (PatchGrid(16, 16, 16, 16, 128), PatchGrid(16, 16, 10, 16, 128), PatchGrid(2, 128, 2, 128, 128)):
        image = grid.unpatchify(grid.patchify(x))
        frames = (grid.time_steps(100) - 1) * grid.stride_time + grid.kernel_time
        assert image.shape == (2, frames, 128)
        assert torch.allclose(image, x[:, :frames], atol=1e-6)


@pytest.mark.parametrize("feature_type", ["mfcc", "spectrogram", "wav"])
def test_a_checkpoint_of_other_features_is_refused_not_fed_fbank(tmp_path, feature_type):
    """The original's task offered mfcc and spectrogram input; this package computes fbank only,
    so such a checkpoint is refused by name instead of silently scoring fbank."""
    path = save_checkpoint(tiny_model(), tmp_path / "other.pt", feature_type=feature_type)
    with pytest.raises(Exception, match=f"task.feature_type='{feature_type}': this implementation computes Kaldi"):
        mae_ast.load(path)


def test_feature_spec_compute_takes_arrays_and_keeps_the_contract():
    """README's ``model.feature_spec.compute(wav)`` with the arrays ``extract_layers`` takes."""
    spec, wav = FeatureSpec(), speechlike(1.0)
    assert torch.equal(spec.compute(wav.numpy()), spec.compute(wav))
    with pytest.raises(ValueError, match="waveform 0: dtype torch.int16 is not float"):
        spec.compute((wav * 32767).numpy().astype(np.int16))
