"""The pretraining step is one graph also as fairseq builds the model.

``test_compile.py`` builds the model from a ``MAE_AST_Config`` dataclass. fairseq's own
loading (``checkpoint_utils.load_model_ensemble_and_task``, as ``fairseq-hydra-train``
and every evaluation tool load a checkpoint) hands the model an omegaconf ``DictConfig``
instead, whose attribute lookup dynamo cannot trace: any config read in the step is a
graph break there and nowhere else. So this test loads checkpoints a real
``fairseq-hydra-train`` run wrote (conftest's fixtures) through that path."""

import pytest
import torch
from fairseq import checkpoint_utils
from omegaconf import DictConfig

from conftest import make_batch
from mae_ast.criterions.mae_ast_criterion import MAE_AST_Criterion


class _Task:
    pass


def fairseq_loaded(checkpoint, mask_type: str):
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides={"mask_type": mask_type})
    return models[0].train()


@pytest.mark.parametrize("fixture, mask_type", [
    ("frame_checkpoint", "random_mask"),
    ("frame_checkpoint", "random_mask_batched"),
    ("patch_checkpoint", "chunk_mask"),
])
def test_fairseq_built_training_step_has_no_graph_break(request, fixture, mask_type):
    model = fairseq_loaded(request.getfixturevalue(fixture), mask_type)
    assert isinstance(model.cfg, DictConfig) and model.mask_type == mask_type
    crit = MAE_AST_Criterion(_Task(), reconstruction_weight=10.0, classification_weight=1.0)
    pad = torch.zeros(2, 160, dtype=torch.bool)
    pad[1, 120:] = True  # padded: the token padding mask's path is traced too
    sample = {"id": torch.arange(2), "net_input": {"source": make_batch(2, 160), "padding_mask": pad}}
    torch._dynamo.reset()
    explained = torch._dynamo.explain(lambda s: crit(model, s)[0])(sample)
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]
    assert explained.graph_count == 1
