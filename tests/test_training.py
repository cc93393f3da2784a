"""Training behaviour: overfitting one batch, determinism under a seed, the criterion
against an independent computation."""

import math

import torch
import torch.nn.functional as F

from conftest import DEMO, tiny_model
from mae_ast.criterions.mae_ast_criterion import MAE_AST_Criterion, info_nce
from mae_ast.data import MAE_AST_Dataset


class _Task:
    pass


def demo_batch(n=4, frames=192):
    ds = MAE_AST_Dataset(str(DEMO / "train.tsv"), random_crop=False)
    feats = [ds[i]["source"][:frames] for i in range(n)]
    return {"id": torch.arange(n), "net_input": {"source": torch.stack(feats),
                                                 "padding_mask": torch.zeros(n, frames, dtype=torch.bool)}}


def test_info_nce_against_explicit_loop():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(3, 7, 16, generator=g), torch.randn(3, 7, 16, generator=g)
    loss, acc = info_nce(logits, targets)
    total, hits = 0.0, 0
    for b in range(3):
        for i in range(7):
            scores = [float(logits[b, i] @ targets[b, j]) for j in range(7)]
            log_z = math.log(sum(math.exp(s) for s in scores))
            total += log_z - scores[i]
            hits += int(max(range(7), key=lambda j: scores[j]) == i)
    assert abs(loss.item() - total / 21) < 1e-4
    assert abs(acc.item() - hits / 21) < 1e-6


def test_criterion_combines_weighted_losses():
    torch.manual_seed(0)
    model = tiny_model().eval()
    crit = MAE_AST_Criterion(_Task(), reconstruction_weight=10.0, classification_weight=1.0)
    batch = demo_batch(2)
    torch.manual_seed(1)
    loss, sample_size, log = crit(model, batch)
    torch.manual_seed(1)
    out = model(**batch["net_input"])
    mse = F.mse_loss(out["logit_m_list_recon"], out["target_m_list"])
    nce, _ = info_nce(out["logit_m_list_class"], out["target_m_list"])
    assert sample_size == 1
    assert torch.allclose(loss, 10 * mse + nce)
    assert log["ntokens"] == out["target_m_list"].shape[1] and log["mask_ratio"] == 0.75


def test_loss_goes_down_overfitting_one_batch():
    torch.manual_seed(0)
    model = tiny_model(mask_type="random_mask", dropout=0.0, attention_dropout=0.0)
    crit = MAE_AST_Criterion(_Task(), reconstruction_weight=10.0, classification_weight=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = demo_batch(4)
    losses = []
    for _ in range(100):
        loss, _, _ = crit(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)


def test_training_step_is_deterministic_under_a_seed():
    def step():
        torch.manual_seed(123)
        model = tiny_model(mask_type="chunk_mask")
        crit = MAE_AST_Criterion(_Task(), reconstruction_weight=10.0, classification_weight=1.0)
        loss, _, _ = crit(model.train(), demo_batch(2))
        loss.backward()
        return loss.detach(), model.post_extract_proj.weight.grad.clone()

    (l1, g1), (l2, g2) = step(), step()
    assert torch.equal(l1, l2) and torch.equal(g1, g2)
