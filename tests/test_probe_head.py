"""Why the linear probe's head standardises each feature (model.head_norm=batchnorm).

Pooled encoder features can have per-feature means far larger than their spread across
clips (0.81 vs 0.052 measured on a 4-layer 256-d model). A per-clip LayerNorm leaves that
constant vector in place, and Adam on the linear layer after it crawls; standardising each
feature over the clips (MAE's probe: BatchNorm1d without affine parameters) is what
scikit-learn's StandardScaler + LogisticRegression does. Synthetic features with exactly
that shape, and the classifier's own head (``classify``), show both.
"""

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from conftest import tiny_model
from mae_ast.models.builders import strip_pretraining
from mae_ast.models.head_norm import FeatureNorm
from mae_ast.models.mae_ast_classifier import MAE_AST_Classifier

DIM, CLASSES, TRAIN, TEST = 64, 10, 120, 400


def features(n: int, g: torch.Generator, centers: torch.Tensor, offset: torch.Tensor):
    labels = torch.arange(n) % CLASSES
    return offset + 0.052 * (centers[labels] + torch.randn(n, DIM, generator=g)), labels


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    centers, offset = 0.3 * torch.randn(CLASSES, DIM, generator=g), 0.81 * torch.randn(DIM, generator=g)
    return (*features(TRAIN, g, centers, offset), *features(TEST, g, centers, offset))


def classifier(head_norm: str, freeze: bool = True) -> MAE_AST_Classifier:
    torch.manual_seed(1)
    cfg = dict(head_norm=head_norm, head_dropout=0.0, freeze_encoder=freeze, pooling="mean", layer_decay=1.0,
               head_lr_scale=1.0)
    return MAE_AST_Classifier(type("Cfg", (), cfg)(), strip_pretraining(tiny_model(dim=DIM)), {}, CLASSES)


def probe_accuracy(head_norm: str, data, lr: float = 0.01, updates: int = 300) -> float:
    """The head alone trained by Adam (the recipes' betas) on fixed pooled features."""
    xtr, ytr, xte, yte = data
    model = classifier(head_norm)
    params = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in params} == {id(p) for p in [*model.fc_norm.parameters(), *model.head.parameters()]}
    opt = torch.optim.Adam(params, lr=lr, betas=(0.95, 0.999))
    g = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(updates):
        idx = torch.randint(0, TRAIN, (16,), generator=g)
        loss = torch.nn.functional.cross_entropy(model.classify(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return (model.classify(xte).argmax(-1) == yte).float().mean().item()


def sklearn_accuracy(data) -> float:
    xtr, ytr, xte, yte = (t.numpy() for t in data)
    scaler = StandardScaler().fit(xtr)
    return LogisticRegression(max_iter=5000).fit(scaler.transform(xtr), ytr).score(scaler.transform(xte), yte)


def test_batchnorm_probe_reaches_sklearn_where_layernorm_does_not(data):
    reference = sklearn_accuracy(data)  # 0.4975 (chance 0.10)
    bn, ln = probe_accuracy("batchnorm", data), probe_accuracy("layernorm", data)  # 0.51, 0.345
    assert bn >= reference - 0.05, (bn, reference)
    assert ln < reference - 0.1, (ln, reference)  # the failure the BatchNorm head fixes


def test_probe_batchnorm_trains_in_train_mode_only_and_takes_one_clip_batches():
    model = classifier("batchnorm").train()
    assert not model.backbone.training and model.fc_norm.training  # frozen encoder, probe statistics move
    assert isinstance(model.fc_norm, FeatureNorm) and not list(model.fc_norm.parameters())
    x = torch.randn(8, DIM) * 0.05 + 3.0
    model.classify(x)
    assert model.fc_norm.running_mean.mean() > 0.2  # moved towards 3 (momentum 0.1)
    before = model.fc_norm.running_mean.clone()
    assert model.classify(x[:1]).shape == (1, CLASSES)  # no "more than 1 value per channel" error
    assert torch.equal(before, model.fc_norm.running_mean)
    model.eval()
    out = model.classify(x)
    assert torch.equal(before, model.fc_norm.running_mean) and out.shape == (8, CLASSES)
