"""The model against the original: names/shapes, patch order, and numerics of the
forward pass against s3prl's vendored copy of the original MAE-AST code."""

import random
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from conftest import make_batch, task_cfg, tiny_model
from mae_ast.models.builders import original_model
from mae_ast.models.mae_ast import MAE_AST, MAE_AST_Config
from mae_ast.models.masking import MaskPlan

GOLDEN = Path(__file__).parent / "golden"


def _golden(name):
    rows = {}
    for line in (GOLDEN / f"state_dict_{name}.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        key, shape = line.split("\t")
        rows[key] = [] if shape == "scalar" else [int(s) for s in shape.split("x")]
    return rows


def _released(kt, kc, mask_type):
    cfg = MAE_AST_Config(ast_kernel_size_time=kt, ast_kernel_size_chan=kc, ast_kernel_stride_time=kt,
                         ast_kernel_stride_chan=kc, enc_sine_pos=True, dec_sine_pos=True)
    return MAE_AST(cfg, task_cfg(mask_type))


@pytest.mark.parametrize("name,kt,kc,mask_type", [("patch_16x16", 16, 16, "chunk_mask"),
                                                  ("frame_2x128", 2, 128, "random_mask")])
def test_state_dict_equals_golden_list(name, kt, kc, mask_type):
    got = {k: list(v.shape) for k, v in _released(kt, kc, mask_type).state_dict().items()}
    assert got == _golden(name)


def test_patchify_matches_unfold_order():
    model = tiny_model(kt=16, kc=16).eval()
    x = make_batch(2, 203)
    ours = model.patchify(x)
    ref = nn.Unfold((16, 16), stride=(16, 16))(model.batch_norm(x.unsqueeze(1)) * 0.5).transpose(1, 2)
    assert ours.shape == (2, 12 * 8, 256)
    assert torch.equal(ours, ref)


def test_patchify_with_overlapping_stride_uses_unfold():
    model = tiny_model(kt=16, kc=16, st=8)
    assert model.patchify(make_batch(1, 64)).shape == (1, 7 * 8, 256)


def _original(model):
    pytest.importorskip("s3prl.upstream.mae_ast.mae_ast")
    return original_model(model)


@pytest.mark.parametrize("kt,kc", [(16, 16), (2, 128)])
def test_features_match_original_with_padding(kt, kc):
    torch.manual_seed(0)
    model = tiny_model(kt=kt, kc=kc).eval()
    orig = _original(model)
    x = make_batch(3, 301)
    pad = torch.zeros(3, 301, dtype=torch.bool)
    pad[1, 200:] = True
    pad[2, 97:] = True
    with torch.no_grad():
        for padding in (torch.zeros_like(pad), pad):
            a = orig(x, padding_mask=padding, mask=False, features_only=True)
            b = model(x, padding_mask=padding, mask=False, features_only=True)
            assert torch.equal(a["padding_mask"], b["padding_mask"])
            valid = ~a["padding_mask"]
            assert (a["x"] - b["x"])[valid].abs().max() < 1e-5
            assert (a["features"] - b["features"])[valid].abs().max() < 1e-5  # positions added, as the original
            assert len(a["hidden_states"]) == len(b["hidden_states"]) == 2
            for ha, hb in zip(a["hidden_states"], b["hidden_states"]):
                assert (ha - hb)[valid].abs().max() < 1e-5
            a = orig(x, padding_mask=padding, mask=False, is_decoder_finetune=True)
            b = model(x, padding_mask=padding, mask=False, is_decoder_finetune=True)
            assert len(b["hidden_states"]) == 3
            assert (a["x"] - b["x"])[valid].abs().max() < 1e-5


@pytest.mark.parametrize("mask_type,kt,kc", [("random_mask", 2, 128), ("random_mask", 16, 16),
                                             ("random_mask_batched", 16, 16)])
def test_pretraining_forward_matches_original_under_the_same_mask(mask_type, kt, kc):
    """Drive our model with the mask the original draws from Python's `random`, then
    compare logits and targets at masked positions (eval mode: no dropout)."""
    torch.manual_seed(0)
    model = tiny_model(mask_type=mask_type, kt=kt, kc=kc).eval()
    orig = _original(model)
    x, pad = make_batch(3, 160), torch.zeros(3, 160, dtype=torch.bool)
    T = model.patchify(x).shape[1]
    R = max(1, int(0.25 * T))

    random.seed(5)
    perms = []
    for _ in range(1 if mask_type == "random_mask_batched" else 3):
        idx = list(range(T))
        random.shuffle(idx)
        perms.append(idx)
    mask = torch.ones(len(perms), T, dtype=torch.bool)
    for i, idx in enumerate(perms):
        mask[i, idx[:R]] = False
    model.forward_mask = lambda B, T_, p, d: MaskPlan.from_mask(mask.expand(B, T), R)

    random.seed(5)
    with torch.no_grad():
        a = orig(x.clone(), padding_mask=pad)
        b = model(x, padding_mask=pad)
    for key in ("logit_m_list_recon", "logit_m_list_class", "target_m_list"):
        assert a[key].shape == b[key].shape == (3, T - R, kt * kc)
        assert (a[key] - b[key]).abs().max() < 1e-5, key
    assert b["mask_ratio"] == (T - R) / T


def test_output_layer_stops_early():
    model = tiny_model(layers=2).eval()
    x = make_batch(1, 64)
    full = model(x, mask=False, features_only=True)
    first = model(x, mask=False, features_only=True, output_layer=1)
    assert torch.allclose(first["x"], full["hidden_states"][0])
    assert len(first["hidden_states"]) == 1


def test_too_short_and_too_long_inputs_raise_clear_errors():
    model = tiny_model(kt=16, kc=16).eval()
    with pytest.raises(ValueError, match="shorter than one patch"):
        model(make_batch(1, 15), mask=False)
    with pytest.raises(ValueError, match="max_token_length"):
        model(make_batch(1, 16 * 251), mask=False)


def test_checkpoint_keys_round_trip_through_state_dict(tmp_path):
    model = tiny_model()
    torch.save({"model": model.state_dict()}, tmp_path / "m.pt")
    other = tiny_model()
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True)["model"], strict=True)
    x = make_batch(1, 64)
    assert torch.equal(model.eval()(x, mask=False)["x"], other.eval()(x, mask=False)["x"])


def test_compiled_blocks_match_eager_and_keep_checkpoint_keys():
    torch.manual_seed(0)
    eager = tiny_model().eval()
    compiled = tiny_model(compile_blocks=True).eval()
    compiled.load_state_dict(eager.state_dict(), strict=True)
    assert eager.state_dict().keys() == compiled.state_dict().keys()
    x = make_batch(2, 96)
    with torch.no_grad():
        a, b = eager(x, mask=False)["x"], compiled(x, mask=False)["x"]
    assert (a - b).abs().max() < 1e-4


def test_activation_fn_offers_only_what_a_block_runs():
    """MAE_AST_Config offered fairseq's activations (tanh, swish, ...) while blocks run gelu
    and relu only: model.activation_fn=tanh passed the config and failed in the model."""
    pytest.importorskip("fairseq")
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    schema = OmegaConf.structured(MAE_AST_Config)
    assert OmegaConf.merge(schema, {"activation_fn": "relu"}).activation_fn == "relu"
    with pytest.raises(ValidationError, match="tanh"):
        OmegaConf.merge(schema, {"activation_fn": "tanh"})
