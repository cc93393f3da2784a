"""The random-init baseline (``model.pretrained_checkpoint=null``) has the released models'
architecture (config/pretrain/mae_ast.yaml's model settings), positions included, and can
be shrunk with ``model.encoder={...}`` though the pretraining config's decoder is wider."""

import pytest
import torch
from fairseq import checkpoint_utils
from omegaconf import OmegaConf

from conftest import ROOT
from mae_ast.classifier import load_classifier
from mae_ast.models.builders import ENCODER_FIELDS, PRETRAINING_ARCHITECTURE, build_backbone
from conftest import finetune, write_data

SMALL = {"encoder_layers": 2, "encoder_embed_dim": 64, "encoder_ffn_embed_dim": 128, "encoder_attention_heads": 4}
FRAMES = 272  # test_finetune's target_length: 17 time patches of 16 frames


def test_random_init_architecture_is_the_pretraining_config():
    model = OmegaConf.to_container(OmegaConf.load(ROOT / "config" / "pretrain" / "mae_ast.yaml").model)
    assert model.pop("_name") == "mae_ast"
    assert PRETRAINING_ARCHITECTURE == model
    assert set(PRETRAINING_ARCHITECTURE) <= ENCODER_FIELDS


def shuffle_time_patches(x: torch.Tensor, patch: int = 16) -> torch.Tensor:
    """The clip's 16-frame time steps in another order: a bag of patches cannot tell."""
    b, t, c = x.shape
    order = torch.randperm(t // patch, generator=torch.Generator().manual_seed(0))
    return x.view(b, t // patch, patch, c)[:, order].reshape(b, t, c)


def test_without_positions_time_order_is_invisible():
    """The control that makes the order test mean something: the dataclass defaults'
    encoder (enc_sine_pos=False) gives the same pooled features for shuffled time steps."""
    torch.manual_seed(0)
    bag = build_backbone({**SMALL, "dropout": 0.0}, {"sample_rate": 16000, "feature_dim": 128, "deltas": False})
    x = torch.randn(2, FRAMES, 128)
    with torch.no_grad():
        a, b = (bag.eval().forward_features(v)["x"].mean(1) for v in (x, shuffle_time_patches(x)))
    assert ((a - b).norm(dim=1) / a.norm(dim=1)).max() < 1e-5


@pytest.mark.slow
def test_random_init_baseline_is_the_released_architecture_and_shrinks(tmp_path):
    """A real fine-tuning run from random init with a shrunk encoder (no decoder setting
    given: the pretraining config's 768-d decoder once refused the 64-d encoder), rebuilt
    the way fairseq builds models (load_model_ensemble_and_task, from the DictConfig)."""
    data = write_data(tmp_path / "data")
    encoder = "model.encoder={" + ",".join(f"{k}:{v}" for k, v in SMALL.items()) + "}"
    ck = finetune(tmp_path / "run", data, "null", encoder, "optimization.max_update=1")
    log = (tmp_path / "run" / "hydra_train.log").read_text()
    assert "architecture of config/pretrain/mae_ast.yaml" in log and "sinusoidal positions" in log

    path = str(ck / "checkpoint_last.pt")
    models, cfg, _ = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": str(data)})
    model = models[0].eval()
    saved = cfg.model.encoder
    assert {k: saved[k] for k in SMALL} == SMALL
    expected = {k: v for k, v in PRETRAINING_ARCHITECTURE.items() if k not in SMALL}
    assert {k: saved[k] for k in expected} == expected  # positions, dropouts, layerdrop, patches
    assert hasattr(model.backbone, "enc_sine_pos_embed") and len(model.backbone.encoder.layers) == 2
    assert model.backbone.encoder.layerdrop == 0.05 and model.backbone.dropout_input.p == 0.1

    x = torch.randn(3, FRAMES, 128, generator=torch.Generator().manual_seed(1)) * 3 - 6
    with torch.no_grad():
        scores = torch.softmax(model(x), -1)
        shuffled = torch.softmax(model(shuffle_time_patches(x)), -1)
        pooled = [model.forward_head(model.forward_features(v), pre_logits=True) for v in (x, shuffle_time_patches(x))]
    # Order matters: positions are encoded. (A fresh head's scores sit near 1/3, so the
    # pooled features show the size of the change; without positions both are ~1e-7.)
    change = ((pooled[0] - pooled[1]).norm(dim=1) / pooled[0].norm(dim=1)).min()
    print(f"shuffled time steps: pooled features change by {change:.3f} (relative), scores by "
          f"{(scores - shuffled).abs().max():.2e}")
    assert change > 1e-3 and (scores - shuffled).abs().max() > 1e-5
    # our loader builds the same model from the same checkpoint
    ours = load_classifier(path, device="cpu").scores(x)
    torch.testing.assert_close(ours, scores, rtol=0, atol=1e-6)
