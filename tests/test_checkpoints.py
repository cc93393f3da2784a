"""mae_ast.checkpoints: one reader for every loader and tool, one message per kind of bad
file, and a fine-tuned classifier's encoder usable wherever features are read
(mae_ast.load, mae-ast-extract, s3prl, further fine-tuning). Issue 13, item 17."""

import re
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import mae_ast
from conftest import BIN, DEMO, ROOT, run_cli
from mae_ast.checkpoints import CheckpointError, read_checkpoint
from mae_ast.classifier import load_classifier
from conftest import finetune, write_data


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory, patch_checkpoint):
    run = tmp_path_factory.mktemp("clf")
    data = write_data(run / "data")
    return finetune(run, data, patch_checkpoint, "optimization.max_update=2") / "checkpoint_last.pt"


def test_a_classifiers_encoder_serves_features(classifier_ckpt, tmp_path):
    clf = load_classifier(str(classifier_ckpt), device="cpu")
    model = mae_ast.load(str(classifier_ckpt), device="cpu")
    assert not hasattr(model, "decoder")
    wav, _ = sf.read(DEMO / "audio" / "speech_00.flac", dtype="float32")
    feats = model.feature_spec.compute(torch.from_numpy(wav))[None, :272]
    ours = model.forward_features(feats)["x"]
    with torch.no_grad():  # the classifier's own encoder on the same input: the same tokens
        theirs = clf.model.backbone.forward_features(feats)["x"]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)

    out = tmp_path / "feats"
    proc = run_cli(BIN / "mae-ast-extract", classifier_ckpt, DEMO / "audio" / "speech_00.flac",
                   "--out", out, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.load(out / "speech_00.flac.npy").shape[1] == model.cfg.encoder_embed_dim

    sys.path.insert(0, str(ROOT / "s3prl"))
    from mae_ast_plus.expert import UpstreamExpert

    states = UpstreamExpert(str(classifier_ckpt))([torch.from_numpy(wav)])["hidden_states"]
    assert len(states) == model.cfg.encoder_layers


def test_show_and_load_classifier_say_which_kind_they_need(classifier_ckpt, patch_checkpoint, tmp_path):
    proc = run_cli(BIN / "mae-ast-show", classifier_ckpt, DEMO / "audio" / "speech_00.flac", "--out", tmp_path / "x.png")
    assert proc.returncode == 1 and "is a fine-tuned classifier (mae_ast_classifier), not a pretraining" in proc.stderr
    assert "mae-ast-predict" in proc.stderr
    with pytest.raises(CheckpointError, match="is a pretraining checkpoint, not a fine-tuned classifier"):
        load_classifier(str(patch_checkpoint))


def test_a_classifier_can_be_fine_tuned_further(classifier_ckpt, tmp_path):
    data = write_data(tmp_path / "data")
    ck = finetune(tmp_path, data, classifier_ckpt, "optimization.max_update=1")
    assert "encoder initialised from" in (tmp_path / "hydra_train.log").read_text()
    assert load_classifier(str(ck / "checkpoint_last.pt"), device="cpu").class_names == ["speech", "environment",
                                                                                          "third"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "is a directory, not a checkpoint file"),
    (lambda p: p.write_bytes(b""), r"not a torch checkpoint \(the file is empty"),
    (lambda p: p.write_text("hello"), r"not a torch checkpoint \(the file is text"),
    ("truncated", r"not a torch checkpoint \(a zip archive of \d+ bytes whose end is missing: probably truncated"),
])
def test_every_loader_and_tool_describes_a_bad_file_alike(tmp_path, patch_checkpoint, make, message):
    bad = tmp_path / "bad.pt"
    if make == "truncated":
        data = patch_checkpoint.read_bytes()
        bad.write_bytes(data[: len(data) // 3])
    else:
        make(bad)
    for loader in (read_checkpoint, mae_ast.load, load_classifier):
        with pytest.raises(CheckpointError, match=f"{bad}: {message}"):
            loader(str(bad))
    audio = str(DEMO / "audio" / "speech_00.flac")
    tools = (("mae-ast-extract", ["--out", str(tmp_path / "o")]), ("mae-ast-show", ["--out", str(tmp_path / "x.png")]),
             ("mae-ast-predict", []), ("mae-ast-evaluate", []))
    for tool, extra in tools:
        proc = run_cli(BIN / tool, bad, DEMO if tool == "mae-ast-evaluate" else audio, *extra, timeout=300)
        assert proc.returncode != 0 and re.search(f"{bad}: {message}", proc.stderr), (tool, proc.stderr[-1500:])
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
