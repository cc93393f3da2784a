"""Fine-tuning mechanics with the real fairseq CLI on the demo audio: speech_* clips are
class 0, env_* class 1 (a multi-label variant adds a class every third clip)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq import checkpoint_utils

from conftest import BIN, CLASS_NAMES as NAMES, ROOT, finetune, logged, run_cli, write_data
from mae_ast.classifier import load_classifier
from mae_ast.data import read_audio
from mae_ast.metrics import classification_metrics
from mae_ast.models.mae_ast_classifier import MAE_AST_Classifier

AUGMENT = ["task.freqm=24", "task.timem=48", "task.mixup=0.5", "task.noise=true"]


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("ft") / "single")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data, patch_checkpoint) -> Path:
    """4 updates with every augmentation on, checkpoints every 2 updates."""
    run = tmp_path_factory.mktemp("straight")
    finetune(run, data, patch_checkpoint, *AUGMENT, "optimization.max_update=4",
             "checkpoint.save_interval_updates=2")
    return run


def test_classifier_checkpoint_is_self_contained_and_decoder_free(straight, data, tmp_path):
    ckpt = straight / "ck" / "checkpoint_last.pt"
    keys = weights(ckpt).keys()
    assert not [k for k in keys if "decoder" in k or "final_proj" in k or "mask_emb" in k]
    assert "head.weight" in keys and "backbone.encoder.layers.0.fc1.weight" in keys

    clf = load_classifier(str(ckpt), device="cpu")
    assert clf.class_names == NAMES and clf.multi_label is False and clf.target_length == 272
    # fairseq's loader, with the data folder and pretraining checkpoint made unreachable
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(ckpt)], arg_overrides={"data": str(tmp_path / "gone"), "pretrained_checkpoint": str(tmp_path / "x.pt")})
    model = models[0].eval()
    assert isinstance(model, MAE_AST_Classifier)
    task.cfg.data = str(data)
    task.load_dataset("valid")
    ds = task.dataset("valid")
    batch = ds.collater([ds[i] for i in range(len(ds))])
    assert batch["net_input"]["padding_mask"].any()  # short clips padded
    with torch.no_grad():
        probs = torch.softmax(model(**batch["net_input"]), dim=-1)
    ours = clf.scores(batch["net_input"]["source"], batch["net_input"]["padding_mask"])
    torch.testing.assert_close(ours, probs, rtol=0, atol=1e-6)
    assert torch.allclose(ours.sum(-1), torch.ones(len(ours)))

    # a batch without padding carries no mask (attention's unmasked path), same logits
    full = [i for i, row in enumerate(batch["net_input"]["padding_mask"]) if not row.any()]
    assert full, "the valid split should hold clips that fill the input"
    unpadded = ds.collater([ds[i] for i in full])
    assert unpadded["net_input"]["padding_mask"] is None
    with torch.no_grad():
        masked = model(batch["net_input"]["source"][full], torch.zeros(len(full), 272, dtype=torch.bool))
        torch.testing.assert_close(model(**unpadded["net_input"]), masked, rtol=0, atol=1e-5)

    # waveforms in: the same features as the dataset (start crop / pad to target_length)
    wavs = [read_audio(ds.paths[i]) for i in (0, 1)]
    torch.testing.assert_close(clf.scores(wavs), ours[:2], rtol=0, atol=1e-5)
    windows = clf.scores_windows(wavs[0], hop_frames=64)
    assert windows.shape[1] == len(NAMES) and len(windows) >= 1


def test_validation_metric_equals_classification_metrics_and_is_deterministic(straight, data):
    ckpt = straight / "ck" / "checkpoint_last.pt"
    valid = logged(straight, "valid")
    last = [r for r in valid if int(r["valid_num_updates"]) == 4][-1]
    clf = load_classifier(str(ckpt), device="cpu")
    from mae_ast.tools.evaluate import open_split, score_split

    ds = open_split(clf, str(data), "valid")
    scores, targets, skipped, _ = score_split(clf, ds, batch_size=3)
    expected = classification_metrics(scores, targets, multi_label=False)
    assert skipped == 0 and expected["n_clips"] == 8
    assert float(last["valid_accuracy"]) == pytest.approx(expected["accuracy"], abs=1e-6)

    # No augmentation at validation: the logged loss is reproduced exactly, twice.
    def valid_loss():
        t = torch.from_numpy(targets)
        return float(-(t * torch.log(torch.from_numpy(score_split(clf, ds, 8)[0]))).sum(1).mean())

    assert valid_loss() == valid_loss()
    assert valid_loss() == pytest.approx(float(last["valid_loss"]), abs=1e-3)
    # ...while training mode does augment
    net = ds.collater([ds[i] for i in range(4)])["net_input"]
    model = clf.model
    model.augment.update(freqm=24, timem=48, noise=True)
    model.train()
    with torch.no_grad():
        a, b = model(**net), model(**net)
    model.eval()
    assert not torch.equal(a, b)


def test_resume_matches_an_uninterrupted_run(straight, data, patch_checkpoint, tmp_path):
    args = [*AUGMENT, "checkpoint.save_interval_updates=2"]
    finetune(tmp_path, data, patch_checkpoint, *args, "optimization.max_update=2")
    finetune(tmp_path, data, patch_checkpoint, *args, "optimization.max_update=4")
    assert "Loaded checkpoint" in (tmp_path / "hydra_train.log").read_text()
    a, b = weights(straight / "ck" / "checkpoint_last.pt"), weights(tmp_path / "ck" / "checkpoint_last.pt")
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-6, worst


def test_freeze_encoder_keeps_encoder_bit_identical(data, patch_checkpoint, tmp_path):
    finetune(tmp_path, data, patch_checkpoint, *AUGMENT, "model.freeze_encoder=true", "optimization.max_update=2",
             "dataset.disable_validation=true",
             "checkpoint.save_interval_updates=1", "checkpoint.keep_interval_updates=2")
    pre = weights(patch_checkpoint)
    first, second = (weights(tmp_path / "ck" / f"checkpoint_1_{u}.pt") for u in (1, 2))
    backbone = [k for k in second if k.startswith("backbone.")]
    assert backbone and all(torch.equal(second[k], pre[k[len("backbone."):]]) for k in backbone)  # BN stats too
    assert all(torch.equal(first[k], second[k]) for k in backbone)
    assert not torch.equal(first["head.weight"], second["head.weight"])
    # head_norm=null on a probe = MAE's BatchNorm without affine parameters, in train mode
    # during training (its statistics move), recorded in the checkpoint and rebuilt from it
    assert not torch.equal(first["fc_norm.running_mean"], second["fc_norm.running_mean"])
    assert "fc_norm.weight" not in second
    ckpt = tmp_path / "ck" / "checkpoint_1_2.pt"
    assert torch.load(ckpt, weights_only=True)["cfg"]["model"]["head_norm"] == "batchnorm"
    assert isinstance(load_classifier(str(ckpt), device="cpu").model.fc_norm, torch.nn.BatchNorm1d)


def test_multi_label_layer_decay_logs_map_and_scales_lrs(tmp_path, patch_checkpoint):
    data = write_data(tmp_path / "multi", multi_label=True)
    run = tmp_path / "run"
    finetune(run, data, patch_checkpoint, "task.multi_label=true", "model.layer_decay=0.5",
             "model.head_lr_scale=2.0", "optimization.max_update=2", "optimization.lr=[0.001]",
             "checkpoint.best_checkpoint_metric=mAP")
    valid = logged(run, "valid")[-1]
    assert {"valid_mAP", "valid_auc", "valid_d_prime"} <= set(valid) and "valid_accuracy" not in valid
    assert (run / "ck" / "checkpoint_best.pt").exists()
    clf = load_classifier(str(run / "ck" / "checkpoint_last.pt"), device="cpu")
    from mae_ast.tools.evaluate import open_split, score_split

    scores, targets, _, _ = score_split(clf, open_split(clf, str(data), "valid"), 4)
    assert float(valid["valid_mAP"]) == pytest.approx(classification_metrics(scores, targets, True)["mAP"], abs=1e-5)

    # 2 encoder layers: embedding 0.5^3, layer 0 0.5^2, layer 1 0.5, head 1 x head_lr_scale 2
    state = torch.load(run / "ck" / "checkpoint_last.pt", weights_only=True)["last_optimizer_state"]
    lrs = sorted(round(g["param_groups"][0]["lr"] / 0.001, 6) for g in state.values())
    assert lrs == [0.125, 0.25, 0.5, 2.0]  # head_lr_scale covers fc_norm + head


def test_layer_decay_needs_the_composite_optimizer(patch_checkpoint):
    from mae_ast.tasks.mae_ast_classification import check_optimizer

    class Plain:
        supports_groups = False

    model = type("M", (), {"needs_param_groups": True})()
    with pytest.raises(ValueError, match="composite"):
        check_optimizer(model, Plain())


def test_evaluate_cli_table_json_bad_clip_and_label_errors(straight, data, tmp_path):
    ckpt = straight / "ck" / "checkpoint_last.pt"
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("label_descriptors.csv", "test.lbl"):
        (bad / name).write_text((data / name).read_text())
    lines = (data / "test.tsv").read_text().splitlines()
    (bad / "test.tsv").write_text("\n".join(lines + ["missing.flac\t16000"]) + "\n")
    (bad / "test.lbl").write_text((data / "test.lbl").read_text() + "missing.flac\tspeech\n")
    out = tmp_path / "m.json"
    cmd = [BIN / "mae-ast-evaluate", ckpt, bad, "--split", "test", "--json", out,
           "--device", "cpu", "--batch-size", "4", "--allow-skipped"]
    proc = run_cli(*cmd, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout and "n_clips" in proc.stdout
    result = json.loads(out.read_text())
    assert result["n_clips"] == len(lines) - 1 and result["skipped_clips"] == 1
    assert result["split"] == "test" and 0 <= result["accuracy"] <= 1
    assert "missing.flac" in proc.stderr

    (bad / "test.lbl").write_text((data / "test.lbl").read_text() + "missing.flac\tnot_a_class\n")
    proc = run_cli(*cmd, timeout=300)
    assert proc.returncode == 2 and f"{bad / 'test.lbl'}:{len(lines)}" in proc.stderr, proc.stderr


def test_task_refuses_features_that_contradict_the_checkpoint(data, patch_checkpoint, tmp_path):
    proc = finetune(tmp_path, data, patch_checkpoint, "task.feature_dim=80", check=False)
    assert proc.returncode != 0 and "task.feature_dim=80 contradicts" in proc.stderr + proc.stdout


def test_dataset_crops_and_weighted_draws(data):
    from mae_ast.data.classification_dataset import ClassificationDataset
    from mae_ast.data.labels import read_label_descriptors

    labels = read_label_descriptors(str(data / "label_descriptors.csv"))

    def make(split, train, **kw):
        return ClassificationDataset(str(data / f"{split}.tsv"), str(data / f"{split}.lbl"), labels,
                                     target_length=64, train=train, seed=3, **kw)

    valid = make("valid", False)
    first = valid.collater([valid[0]])["net_input"]["source"]
    valid.set_epoch(2)
    assert torch.equal(first, valid.collater([valid[0]])["net_input"]["source"])  # start crop, every epoch
    assert list(valid.ordered_indices()) == list(range(len(valid)))
    train = make("train", True, weighted_sampling=True)
    train.set_epoch(1)
    a = train.ordered_indices()
    train.set_epoch(2)
    b = train.ordered_indices()
    assert not np.array_equal(a, b) and len(a) == len(train)
    train.set_epoch(1)
    assert np.array_equal(a, train.ordered_indices())
    assert train.num_tokens(0) == 64


@pytest.mark.parametrize("recipe", ["base", "esc50", "speechcommands", "audioset_20k", "audioset_2m"])
def test_recipes_list_every_field(recipe):
    import dataclasses

    from omegaconf import OmegaConf

    from mae_ast.criterions.classification_criterion import Classification_Criterion_Config
    from mae_ast.models.classifier_config import MAE_AST_Classifier_Config
    from mae_ast.tasks.mae_ast_classification import MAE_AST_Classification_Config

    cfg = OmegaConf.load(ROOT / "config" / "finetune" / f"{recipe}.yaml")
    for group, dc in (("task", MAE_AST_Classification_Config), ("model", MAE_AST_Classifier_Config),
                      ("criterion", Classification_Criterion_Config)):
        assert {f.name for f in dataclasses.fields(dc)} - set(cfg[group]) == set(), group
    assert cfg.lr_scheduler._name == "pass_through" and cfg.optimizer._name == "composite"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
