"""The plugin reaches fairseq only through its public hooks: the root config through the
task node's link (``OmegaConf.select``), the fp32 fallback through that config before the
Trainer reads it, whole-split metrics through ``log_concat_tensor``/``log_derived``."""

import logging

import pytest
import torch
from fairseq import metrics, tasks
from fairseq.dataclass.configs import FairseqConfig
from omegaconf import OmegaConf, open_dict

from conftest import DEMO
from mae_ast.criterions.classification_criterion import SCORES_KEY, TARGETS_KEY, Classification_Criterion, reset_scores
from mae_ast.metrics import classification_metrics
from mae_ast.tasks.run_checks import root_config


def fairseq_config(**common) -> OmegaConf:
    cfg = OmegaConf.structured(FairseqConfig)
    with open_dict(cfg):
        cfg.task = {"_name": "mae_ast_pretraining", "data": str(DEMO)}
        for key, value in common.items():
            cfg.common[key] = value
    return cfg


def test_root_config_is_found_above_the_merged_task_node():
    cfg = fairseq_config()
    task = tasks.setup_task(cfg.task)
    assert root_config(task.cfg) is cfg
    assert root_config(OmegaConf.create({"data": "x"})) is None  # a task config on its own
    assert root_config(OmegaConf.create({"task": {}}).task) is None  # a parent that is no fairseq config


@pytest.mark.parametrize("flag", ["fp16", "bf16"])
def test_half_precision_falls_back_to_fp32_without_cuda(monkeypatch, caplog, flag):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = fairseq_config(**{flag: True, f"memory_efficient_{flag}": True})
    with caplog.at_level(logging.WARNING):
        tasks.setup_task(cfg.task)
    assert not (cfg.common.fp16 or cfg.common.bf16 or cfg.common.memory_efficient_fp16
                or cfg.common.memory_efficient_bf16)
    assert "training in fp32" in caplog.text
    loaded = fairseq_config(fp16=True)  # a checkpoint's config, loaded by a tool: left as saved
    tasks.setup_task(loaded.task, from_checkpoint=True)
    assert loaded.common.fp16


def test_half_precision_is_kept_on_cuda_unless_common_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg, cpu = fairseq_config(fp16=True), fairseq_config(fp16=True, cpu=True)
    tasks.setup_task(cfg.task)
    tasks.setup_task(cpu.task)
    assert cfg.common.fp16 and not cpu.common.fp16


def batch_log(scores: torch.Tensor, targets: torch.Tensor) -> dict:
    return {"loss": 0.0, "sample_size": len(scores), "scores": scores, "targets": targets, "multi_label": False}


def validate(batches: list) -> float:
    """As fairseq's validate: a new root aggregator per subset, trainer.valid_step adds "valid"."""
    with metrics.aggregate(new_root=True) as agg:
        for batch in batches:
            with metrics.aggregate("valid"):
                Classification_Criterion.reduce_metrics([batch])
    return agg.get_smoothed_value("accuracy")


def test_whole_split_accuracy_resumes_and_resets():
    """The metric is over every clip of a split, not a mean over batches; the "valid"
    aggregator fairseq saves in checkpoints is restored by a resumed run; each validation
    run (and each subset) sees only its own clips."""
    metrics.reset()
    torch.manual_seed(0)
    scores, targets = torch.rand(7, 3), torch.eye(3)[torch.randint(0, 3, (7,))]
    batches = [batch_log(scores[:4], targets[:4]), batch_log(scores[4:], targets[4:])]
    whole = classification_metrics(scores.numpy(), targets.numpy(), False)["accuracy"]
    assert validate(batches) == pytest.approx(whole)

    saved = metrics.state_dict()  # what Trainer.state_dict puts into extra_state
    metrics.reset()
    metrics.load_state_dict(saved)  # rebuilds each meter by its class name (a resume)
    assert metrics.get_meter("valid", "_scores").tensor.shape == (7, 3)

    reset_scores()  # begin_valid_epoch
    assert validate(batches[1:]) == pytest.approx(
        classification_metrics(scores[4:].numpy(), targets[4:].numpy(), False)["accuracy"])
    assert metrics.get_meter("valid", "_scores").tensor.shape == (3, 3)
    assert validate(batches[:1]) == pytest.approx(  # a second subset of the same validation
        classification_metrics(scores[:4].numpy(), targets[:4].numpy(), False)["accuracy"])
    metrics.reset()


def test_checkpoints_do_not_carry_the_last_validations_scores(finetuned_checkpoint):
    """The split's scores are reduced into the logged metric; a checkpoint keeps no copy."""
    state = torch.load(finetuned_checkpoint, weights_only=False)
    kept = {key: meter for name, agg in state["extra_state"]["metrics"].items()
            for _, key, _, meter in agg if key in (SCORES_KEY, TARGETS_KEY)}
    assert kept and all(meter["tensor"] is None for meter in kept.values()), kept
