"""The pretraining step as one graph: model forward + criterion capture with no graph
break for every fixed-shape mask type, hold no host synchronisation or host-side
tensor (checked by running the step on the ``meta`` device, where any ``.item()``,
``bool(tensor)`` or ``nonzero`` raises), and give the eager step's outputs when run
from the captured graph."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from conftest import make_batch, tiny_model
from mae_ast.criterions.mae_ast_criterion import MAE_AST_Criterion

# retain_spans is not here: its retained-token count is drawn per batch and sets the
# encoder's sequence length, a data-dependent shape (see masking.retain_spans_mask).
FIXED_SHAPE_MASKS = ["random_mask", "random_mask_batched", "chunk_mask"]
MODELS = {"patch": (16, 16), "frame": (2, 128)}


class _Task:
    pass


def _step_parts(mask_type, model_kind, layerdrop=0.05, padded=True):
    kt, kc = MODELS[model_kind]
    torch.manual_seed(0)
    model = tiny_model(mask_type=mask_type, kt=kt, kc=kc, encoder_layerdrop=layerdrop,
                       decoder_layerdrop=layerdrop).train()
    crit = MAE_AST_Criterion(_Task(), reconstruction_weight=10.0, classification_weight=1.0)
    pad = torch.zeros(2, 160, dtype=torch.bool)
    if padded:
        pad[1, 120:] = True
    sample = {"id": torch.arange(2), "net_input": {"source": make_batch(2, 160), "padding_mask": pad}}
    return model, crit, sample


@pytest.mark.parametrize("model_kind", MODELS)
@pytest.mark.parametrize("mask_type", FIXED_SHAPE_MASKS)
def test_training_step_has_no_graph_break(mask_type, model_kind):
    model, crit, sample = _step_parts(mask_type, model_kind)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(lambda s: crit(model, s)[0])(sample)
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]
    assert explained.graph_count == 1


@pytest.mark.parametrize("model_kind", MODELS)
def test_feature_extraction_has_no_graph_break(model_kind):
    model, _, sample = _step_parts("random_mask", model_kind)
    model.eval()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model.forward_features)(**sample["net_input"])
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]


class HostTraffic(TorchDispatchMode):
    """Records every op that moves data between the host and the device (``meta``
    here): a host tensor copied in, a device tensor read back, or a scalar read."""

    def __init__(self) -> None:
        super().__init__()
        self.crossings: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        seen = {t.device.type for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)}
        # A scalar read of a host tensor (eager layerdrop's CPU draws) costs no sync.
        if {"cpu", "meta"} <= seen or (func is torch.ops.aten._local_scalar_dense.default and "meta" in seen):
            self.crossings.append(str(func))
        return out


@pytest.mark.parametrize("model_kind", MODELS)
@pytest.mark.parametrize("mask_type", FIXED_SHAPE_MASKS)
def test_training_step_runs_without_the_host(mask_type, model_kind):
    """On ``meta`` tensors every value is unknown, so a host sync raises; and no op may
    mix host tensors into the step (on a GPU each would be a host-to-device copy)."""
    model, crit, sample = _step_parts(mask_type, model_kind)
    model.to("meta")
    batch = {"id": sample["id"].to("meta"), "net_input": {k: v.to("meta") for k, v in sample["net_input"].items()}}
    with HostTraffic() as traffic:
        loss, _, log = crit(model, batch)
        loss.backward()
    assert traffic.crossings == []
    assert loss.device.type == "meta" and log["nce_acc"].device.type == "meta"


@pytest.mark.parametrize("mask_type", FIXED_SHAPE_MASKS)
def test_captured_step_equals_the_eager_step(mask_type):
    """fullgraph capture run by the eager backend: same ops in the same order, hence the
    same random draws and the same loss and gradients (no layerdrop: under compilation
    a dropped layer is computed and discarded, which draws different numbers)."""
    model, crit, sample = _step_parts(mask_type, "patch", layerdrop=0.0)
    results = []
    for run in (lambda s: crit(model, s)[0],
                torch.compile(lambda s: crit(model, s)[0], fullgraph=True, backend="eager")):
        torch._dynamo.reset()
        torch.manual_seed(7)
        model.zero_grad()
        loss = run(sample)
        loss.backward()
        results.append((loss.detach(), model.post_extract_proj.weight.grad.clone()))
    (a, ga), (b, gb) = results
    assert torch.equal(a, b) and torch.equal(ga, gb)


def test_layerdrop_under_compilation_keeps_the_graph_whole():
    model, crit, sample = _step_parts("random_mask", "patch", layerdrop=0.5)
    torch._dynamo.reset()
    step = torch.compile(lambda s: crit(model, s)[0], fullgraph=True, backend="eager")
    for seed in range(3):
        torch.manual_seed(seed)
        assert torch.isfinite(step(sample))
