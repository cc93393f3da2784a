"""The s3prl upstream, through the real s3prl package's upstream machinery, on
checkpoints written by real fairseq-hydra-train runs."""

import importlib.util
import sys

import pytest
import torch

from conftest import ROOT

interfaces = pytest.importorskip("s3prl.upstream.interfaces")


def load_upstream_package():
    """Import s3prl/mae_ast_plus as s3prl would after copying it to upstream/mae_ast_plus."""
    name = "s3prl.upstream.mae_ast_plus"
    if name not in sys.modules:
        folder = ROOT / "s3prl" / "mae_ast_plus"
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return importlib.import_module(name + ".hubconf")


def waves(*seconds):
    g = torch.Generator().manual_seed(0)
    t = [torch.arange(int(s * 16000)) / 16000 for s in seconds]
    return [0.3 * torch.sin(2 * torch.pi * (200 + 100 * i) * x) + 0.01 * torch.randn(len(x), generator=g)
            for i, x in enumerate(t)]


@pytest.mark.parametrize("which,rate", [("frame_checkpoint", 320), ("patch_checkpoint", 2560)])
def test_upstream_through_s3prl_featurizer(request, which, rate):
    ckpt = request.getfixturevalue(which)
    hub = load_upstream_package()
    upstream = hub.mae_ast(str(ckpt))
    assert isinstance(upstream, interfaces.UpstreamBase)
    assert upstream.get_downsample_rates("hidden_states") == rate

    wavs = waves(3.0, 1.3, 2.2)
    with torch.no_grad():
        feats = upstream(wavs)
    hidden = feats["hidden_states"]
    assert len(hidden) == 2 and torch.equal(feats["last_hidden_state"], hidden[-1])
    longest = max(len(w) for w in wavs)
    assert hidden[0].shape[0] == 3 and hidden[0].shape[-1] == 64
    # The rate matches the frames returned: 16 kHz samples per output frame.
    assert abs(hidden[0].shape[1] - longest / rate) <= 1

    featurizer = interfaces.Featurizer(upstream, feature_selection="hidden_states", upstream_device="cpu")
    assert featurizer.downsample_rate == rate
    per_clip = featurizer(wavs, feats)
    # s3prl cuts each clip to round(len / rate) rows; the upstream returns exactly that.
    for f, w in zip(per_clip, wavs):
        assert len(f) == round(len(w) / rate)

    # A short clip padded in the batch gives the same valid features as alone.
    with torch.no_grad():
        alone = upstream([wavs[1]])["hidden_states"]
    n = alone[-1].shape[1]
    for h_batch, h_alone in zip(hidden, alone):
        assert (h_batch[1, :n] - h_alone[0]).abs().max() < 1e-4


@pytest.mark.parametrize("which", ["frame_checkpoint", "patch_checkpoint"])
def test_featurizer_output_of_a_padded_clip_equals_the_clip_alone(request, which):
    """Item 4: s3prl's Featurizer keeps round(len / rate) rows per clip. A 1.25 s clip
    has 7 whole patch tokens (61 frame tokens) where s3prl keeps 8 (62): the extra row
    used to be padding, which entered the clip's mean pool. Over a range of lengths, a
    clip padded in a batch must give the Featurizer the same rows (and pooled vector) as
    alone."""
    hub = load_upstream_package()
    upstream = hub.mae_ast(str(request.getfixturevalue(which)))
    featurizer = interfaces.Featurizer(upstream, feature_selection="last_hidden_state", upstream_device="cpu")
    rate = upstream.get_downsample_rates("last_hidden_state")
    long = waves(4.0)[0]
    for seconds in (0.6, 0.93, 1.25, 1.37, 1.9, 2.55, 3.1):
        clip = waves(seconds)[0] * 0.7
        with torch.no_grad():
            in_batch = featurizer([long, clip], upstream([long, clip]))[1]
            alone = featurizer([clip], upstream([clip]))[0]
        assert len(in_batch) == len(alone) == round(len(clip) / rate), seconds
        assert (in_batch - alone).abs().max() < 1e-4, seconds
        assert (in_batch.mean(0) - alone.mean(0)).abs().max() < 1e-4, seconds


def test_time_aligned_states_are_means_over_channel_blocks(patch_checkpoint):
    import mae_ast

    model = mae_ast.load(str(patch_checkpoint), device="cpu")
    wav = waves(2.0)
    with torch.no_grad():
        aligned = model.extract_layers(wav)["hidden_states"][-1]
        feats, pad = model.wavs_to_fbank(wav)
        tokens = model(feats, padding_mask=pad, mask=False, features_only=True)["x"]
    assert tokens.shape[1] == aligned.shape[1] * 8
    assert torch.allclose(aligned, tokens.reshape(1, -1, 8, tokens.shape[-1]).mean(2), atol=1e-6)
    # Utterance mean pooling is unchanged by the alignment.
    assert torch.allclose(aligned.mean(1), tokens.mean(1), atol=1e-5)


def test_decoder_states_request_is_refused_not_ignored(frame_checkpoint):
    hub = load_upstream_package()
    with pytest.raises(ValueError, match="is_decoder_finetune is not supported"):
        hub.mae_ast(str(frame_checkpoint), is_decoder_finetune=True)


def test_hubconf_missing_file_is_a_clear_error(tmp_path):
    hub = load_upstream_package()
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        hub.mae_ast(str(tmp_path / "nope.pt"))


def test_s3prl_builtin_upstream_model_loads_our_checkpoint(frame_checkpoint):
    """s3prl 0.4.18's own mae_ast model (a copy of the original) loads ours strictly."""
    from types import SimpleNamespace

    orig = pytest.importorskip("s3prl.upstream.mae_ast.mae_ast")
    state = torch.load(frame_checkpoint, weights_only=True)
    model = orig.MAE_AST(SimpleNamespace(**state["cfg"]["model"]), SimpleNamespace(**state["cfg"]["task"]))
    model.load_state_dict(state["model"], strict=True)
