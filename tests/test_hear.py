"""mae_ast.hear: the HEAR 2021 API, checked by the benchmark's own validator
(hearvalidator 2021.0.6) on a patch, a frame and a fine-tuned checkpoint, and by hand:
the timeline, the shifted passes, the options and short clips."""

import json
import os
import subprocess
import sys

import pytest
import torch

import mae_ast
from conftest import ROOT
from mae_ast import hear

STUBS = ROOT / "tests" / "stubs"  # a tensorflow stand-in: the validator imports it, a torch model never uses it
# The validator always emits this one (a reminder about drift on long audio, which it cannot test).
ALWAYS_WARNED = "IMPORTANT: A common bug we have seen"

VALIDATE = """
import json, sys, warnings
from hearvalidator.validate import ValidateModel
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ValidateModel("mae_ast.hear", sys.argv[1], device="cpu")()
print("WARNINGS " + json.dumps([[w.filename, f"{w.category.__name__}: {w.message}"] for w in caught]))
"""


def run_validator(checkpoint) -> list[str]:
    pytest.importorskip("hearvalidator", reason="hearvalidator not installed (scripts/setup.sh installs it)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(STUBS)]), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", VALIDATE, str(checkpoint)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.split("WARNINGS ", 1)[1])


@pytest.mark.parametrize("which", ["patch_checkpoint", "frame_checkpoint", "finetuned_checkpoint"])
def test_hearvalidator_accepts_without_warnings(which, request):
    """No warning from the validator's checks (but the one it always gives) nor from our
    code. fairseq's own import-time DeprecationWarnings (torch.jit.script under torch 2.13)
    come from the environment, not from the module under test, and are not counted."""
    warned = run_validator(request.getfixturevalue(which))
    ours = [msg for path, msg in warned if "hearvalidator" in path or str(ROOT / "mae_ast") in path]
    assert [msg for msg in ours if ALWAYS_WARNED not in msg] == []
    assert any(ALWAYS_WARNED in msg for msg in ours)  # the check did see the validator's warnings


@pytest.mark.parametrize("which, hop, passes", [("patch_checkpoint", 40.0, 4), ("frame_checkpoint", 20.0, 1)])
def test_timeline_reaches_both_ends_for_any_length(which, hop, passes, request):
    model = hear.load_model(str(request.getfixturevalue(which)), device="cpu")
    assert (model.hop_ms, model.passes, model.sample_rate) == (hop, passes, 16000)
    # 1 sample, shorter than one fbank window (400), than one patch (2800), and longer ones.
    for n in (1, 150, 1000, 2799, 17120, 36001):
        audio = torch.rand(2, n) * 2 - 1
        emb, ts = hear.get_timestamp_embeddings(audio, model)
        scene = hear.get_scene_embeddings(audio, model)
        assert emb.dtype == scene.dtype == ts.dtype == torch.float32
        assert emb.shape == (2, ts.shape[1], model.timestamp_embedding_size)
        assert scene.shape == (2, model.scene_embedding_size) and bool(torch.isfinite(emb).all())
        assert ts[0, 0] == 7.5  # the centre of the first patch, padded half a patch before the clip
        if n * 1000 / 16000 >= 7.5:  # a clip shorter than the first centre still gets one embedding
            assert ts[0, -1] <= n / 16 and ts[0, -1] > n / 16 - hop
        assert torch.allclose(ts.diff(dim=1), torch.tensor(hop)) and (ts[0] == ts[1]).all()


def test_shifted_passes_are_real_tokens(patch_checkpoint):
    """Embedding k is token k // P of the encoder run on the (edge-padded) features from
    frame (k % P) * hop on: each pass is the model's own output, no interpolation."""
    model = hear.load_model(str(patch_checkpoint), device="cpu", window_s=0)
    enc = mae_ast.load(str(patch_checkpoint), device="cpu")
    audio = torch.rand(1, 16000) * 2 - 1
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    feats = enc.feature_spec.compute(audio[0])
    pad = enc.batch_norm.running_mean.item()
    image = torch.cat([torch.full((8, feats.shape[1]), pad), feats, torch.full((200, feats.shape[1]), pad)])
    P, d, n = 4, 4, emb.shape[1]
    for j in range(P):
        steps = len(range(j, n, P))
        states = enc.extract_layers(image[None, j * d : j * d + 16 * steps])["last_hidden_state"][0]
        assert torch.allclose(emb[0, j::P], states[:steps], atol=1e-5)
        # That pass's centres: 10 ms frames, patch of 16 frames starting at j*d - 8.
        assert torch.allclose(ts[0, j::P], torch.tensor([(j * d - 8 + 16 * t) * 10 + 87.5 for t in range(steps)]))


def test_scene_is_the_mean_of_extract_layers(frame_checkpoint):
    enc = mae_ast.load(str(frame_checkpoint), device="cpu")
    wav = torch.rand(24000) * 2 - 1
    want = enc.extract_layers([wav])["last_hidden_state"].mean(dim=1)
    got = hear.get_scene_embeddings(wav[None], hear.load_model(str(frame_checkpoint), device="cpu"))
    assert torch.allclose(got, want, atol=1e-5)
    # A layer mix is the mean of those layers; windows of 0.5 s keep the timeline.
    layers = enc.extract_layers([wav])["hidden_states"]
    assert torch.allclose(hear.get_scene_embeddings(wav[None], hear.HearModel(enc, layer="all")),
                          torch.stack(layers).mean(dim=0).mean(dim=1), atol=1e-5)
    _, ts = hear.get_timestamp_embeddings(wav[None], hear.HearModel(enc, window_s=0.5))
    _, ts_whole = hear.get_timestamp_embeddings(wav[None], hear.HearModel(enc, window_s=0))
    assert torch.equal(ts, ts_whole)


def test_options_are_checked(patch_checkpoint):
    path = str(patch_checkpoint)
    enc = mae_ast.load(path, device="cpu")
    assert hear.HearModel(enc, hop_ms=20).passes == 8
    assert hear.HearModel(enc, layer=[1, -1]).layers == [1, 2]
    with pytest.raises(ValueError, match="exact hops .* are 10, 20, 40, 80, 160 ms"):
        hear.HearModel(enc, hop_ms=50)
    with pytest.raises(ValueError, match="layers 1..2"):
        hear.HearModel(enc, layer=3)
    with pytest.raises(ValueError, match="unknown options"):
        hear.load_model(path, hop=40)
    model = hear.HearModel(enc)
    with pytest.raises(ValueError, match=r"\(n_sounds, n_samples\)"):
        hear.get_scene_embeddings(torch.zeros(16000), model)
    with pytest.raises(ValueError, match="not on the \\[-1, 1\\] scale"):
        hear.get_scene_embeddings(torch.full((1, 16000), 1000.0), model)
