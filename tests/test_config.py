"""config/pretrain/mae_ast.yaml lists every field of the model, task and criterion
dataclasses, so each one is overridden the plain way (``model.encoder_embed_dim=256``),
as with fairseq's built-in models. Hydra refuses a plain override of a key the composed
config lacks, and asks for ``+`` instead; a field added to a dataclass but not to the
yaml would bring that back, and fails here."""

import dataclasses

import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT, hydra_train
from mae_ast.criterions.mae_ast_criterion import MAE_AST_Criterion_Config
from mae_ast.models.mae_ast import MAE_AST_Config
from mae_ast.tasks.mae_ast_pretraining import MAE_AST_Pretraining_Config

CONFIG_DIR = ROOT / "config" / "pretrain"
YAML = CONFIG_DIR / "mae_ast.yaml"
GROUPS = {"model": MAE_AST_Config, "task": MAE_AST_Pretraining_Config, "criterion": MAE_AST_Criterion_Config}

# What the yaml held before every field was listed: the original's values, which stay
# as they are even where they differ from the dataclass default (feature_type, deltas, ...).
ORIGINAL = {
    "task": {
        "data": "???", "feature_type": "fbank", "mask_type": "random_mask", "sample_rate": 16000,
        "max_sample_size": 250000, "min_sample_size": 32000, "feature_rate": 100, "feature_dim": 128,
        "pad_audio": False, "random_crop": True, "normalize": False, "deltas": False,
    },
    "criterion": {"classification_weight": 1, "reconstruction_weight": 10},
    "model": {
        "dropout_input": 0.1, "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0,
        "feature_grad_mult": 0.1, "encoder_layerdrop": 0.05, "decoder_layerdrop": 0.0, "encoder_layers": 12,
        "decoder_layers": 2, "random_mask_prob": 0.75, "enc_conv_pos": False, "enc_sine_pos": True,
        "dec_conv_pos": False, "dec_sine_pos": True, "ast_kernel_size_chan": 16, "ast_kernel_size_time": 16,
        "ast_kernel_stride_chan": 16, "ast_kernel_stride_time": 16,
    },
}


def yaml_group(group: str) -> dict:
    # OmegaConf reads the file as hydra does (``???`` stays a marker, not a value).
    cfg = OmegaConf.load(YAML)[group]
    return {k: v for k, v in OmegaConf.to_container(cfg, throw_on_missing=False).items() if k != "_name"}


def defaults(dc) -> dict:
    return {f.name: f.default for f in dataclasses.fields(dc) if f.name != "_name"}


def hydra_literal(value) -> str:
    """A Python default written in hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@pytest.mark.parametrize("group", list(GROUPS))
def test_yaml_lists_every_dataclass_field(group):
    listed, fields = yaml_group(group), defaults(GROUPS[group])
    assert set(listed) == set(fields), (
        f"{group}: missing from the yaml {sorted(set(fields) - set(listed))}, "
        f"not in the dataclass {sorted(set(listed) - set(fields))}"
    )


@pytest.mark.parametrize("group", list(GROUPS))
def test_original_values_kept_and_new_entries_are_the_dataclass_defaults(group):
    listed, fields = yaml_group(group), defaults(GROUPS[group])
    assert {k: listed[k] for k in ORIGINAL[group]} == ORIGINAL[group]
    added = {k: listed[k] for k in listed if k not in ORIGINAL[group]}
    assert added == {k: fields[k] for k in added}
    # An entry equal in value but of the wrong type ("null" as a string, a quoted number)
    # would only fail at training time; fairseq merges the group into its dataclass the
    # same way (merge_with_parent), so do it here.
    from fairseq.dataclass.utils import merge_with_parent

    merged = merge_with_parent(GROUPS[group](), OmegaConf.load(YAML)[group])
    for key in added:
        assert merged[key] == fields[key], key


def test_every_field_overrides_without_plus():
    """Hydra's compose, as fairseq-hydra-train composes: each field set the plain way."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    overrides = ["task.data=/tmp"]
    for group, dc in GROUPS.items():
        overrides += [f"{group}.{k}={hydra_literal(v)}" for k, v in defaults(dc).items() if k != "data"]
    # fairseq's @hydra.main names no version_base, which means 1.1 semantics; with them
    # the yaml's "# @package _group_" header puts its keys at the top, as in training.
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.1"):
        cfg = compose(config_name="mae_ast", overrides=overrides)
        assert cfg.model.encoder_embed_dim == 768 and cfg.task.fbank_cache is None
        # The check means something: a key the yaml lacks is still refused without '+'.
        with pytest.raises(ConfigCompositionException):
            compose(config_name="mae_ast", overrides=["model.not_a_field=1"])


@pytest.mark.slow
def test_plain_override_trains_and_is_saved(tmp_path):
    run = tmp_path / "run"
    proc = hydra_train(
        run, "model.encoder_layers=1", "model.decoder_layers=1", "model.encoder_embed_dim=64",
        "model.decoder_embed_dim=64", "model.encoder_ffn_embed_dim=128", "model.encoder_attention_heads=4",
        "common.cpu=true", "optimization.max_update=2", "dataset.num_workers=0",
        "distributed_training.distributed_world_size=1", "distributed_training.nprocs_per_node=1",
        "dataset.max_tokens=1000000",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = torch.load(run / "checkpoints" / "checkpoint_last.pt", weights_only=False)
    model_cfg = state["cfg"]["model"]
    assert model_cfg["encoder_embed_dim"] == 64 and model_cfg["decoder_embed_dim"] == 64
    assert model_cfg["encoder_ffn_embed_dim"] == 128 and model_cfg["encoder_attention_heads"] == 4
    # The override reached the weights, not only the saved config.
    assert state["model"]["post_extract_proj.weight"].shape[0] == 64
