"""Issue 22 item 1: an exported folder is where a transformers fine-tune starts, in a clean
venv (only torch, transformers, safetensors; offline).

- ``AutoModelForAudioClassification.from_pretrained(encoder_folder, num_labels=K)`` keeps
  the exported encoder (every value equal to model.safetensors'), initialises the head
  as the package does (truncated N(0, 0.02), zero bias, LayerNorm at identity), says so
  once, and transformers' ``Trainer`` lowers the loss on keyword clips (data/keywords);
- re-heading a classifier folder (``ignore_mismatched_sizes``) gives a new head of the
  same init and keeps its encoder;
- ``AutoModel.from_pretrained(classifier_folder)`` is the classifier's encoder:
  ``extract_layers`` of the fine-tuned checkpoint."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import mae_ast
from conftest import ROOT
from mae_ast.data import read_audio
from test_hf_export import clean_python, export, run_clean

pytest.importorskip("safetensors", reason="the hf extra is not installed (pip install -e '.[hf]')")

KEYWORDS = ROOT / "data" / "keywords"
CLASSES = 4  # yes, no, up, down
PER_CLASS = 4

DRIVER = r"""
import json, sys
import numpy as np, torch
from safetensors.torch import load_file
from transformers import (AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification, Trainer,
                          TrainingArguments)
from transformers.utils import logging as hf_logging
torch.manual_seed(0)
torch.set_num_threads(1)
job = json.load(open(sys.argv[1]))
enc, clf = job["encoder"], job["classifier"]
report = {}

def head_stats(model):
    w, b = model.head.weight.detach(), model.head.bias.detach()
    return {"std": float(w.std()), "max": float(w.abs().max()), "bias": float(b.abs().max()),
            "norm_w": float((model.fc_norm.weight - 1).abs().max()), "norm_b": float(model.fc_norm.bias.abs().max())}

def encoder_diff(model, folder, prefix):
    # Every exported tensor of the encoder against the model's, by name.
    ours = model.state_dict()
    saved = {k[len(prefix):]: v for k, v in load_file(folder + "/model.safetensors").items() if k.startswith(prefix)}
    return {"missing": sorted(set(saved) - set(ours)),
            "max_diff": max(float((ours[k].float() - v.float()).abs().max()) for k, v in saved.items()),
            "n": len(saved)}

# 1. A fine-tune from the encoder folder.
print("LOAD-ENCODER", file=sys.stderr, flush=True)
model = AutoModelForAudioClassification.from_pretrained(enc, num_labels=job["classes"], trust_remote_code=True)
print("LOADED-ENCODER", file=sys.stderr, flush=True)
report["from_encoder"] = {"head": head_stats(model), **encoder_diff(model.mae_ast, enc, "")}
fe = AutoFeatureExtractor.from_pretrained(enc, trust_remote_code=True)
wavs = [np.load(p) for p in job["wavs"]]
feats = fe(wavs, sampling_rate=16000, padding="max_length", max_length=100, truncation=True)
data = [{"input_values": torch.tensor(x), "attention_mask": torch.tensor(m), "labels": int(y)}
        for x, m, y in zip(feats["input_values"], feats["attention_mask"], job["labels"])]
args = TrainingArguments(output_dir=job["out"], per_device_train_batch_size=8, per_device_eval_batch_size=16,
                         num_train_epochs=10, learning_rate=1e-3, warmup_steps=0, weight_decay=0.0,
                         save_strategy="no", report_to=[], logging_steps=1, use_cpu=True, seed=0,
                         dataloader_num_workers=0, disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data)
before = trainer.evaluate()["eval_loss"]
trainer.train()
after = trainer.evaluate()["eval_loss"]
report["train"] = {"before": before, "after": after, "steps": trainer.state.global_step,
                   "logged": [r["loss"] for r in trainer.state.log_history if "loss" in r]}

# 2. Re-heading a classifier folder.
model = AutoModelForAudioClassification.from_pretrained(clf, num_labels=5, ignore_mismatched_sizes=True,
                                                        trust_remote_code=True).eval()
x = fe(wavs[:2], sampling_rate=16000, return_tensors="pt")
with torch.no_grad():
    logits = model(**x).logits
report["reheaded"] = {"head": head_stats(model), "logits_finite": bool(torch.isfinite(logits).all()),
                      "shape": list(logits.shape), **encoder_diff(model.mae_ast, clf, "mae_ast.")}

# 3. The classifier folder's encoder.
model = AutoModel.from_pretrained(clf, trust_remote_code=True).eval()
with torch.no_grad():
    out = model(**fe(wavs[:2], sampling_rate=16000, return_tensors="pt"))
report["encoder_of_classifier"] = {**encoder_diff(model, clf, "mae_ast."), "rows": out.attention_mask.sum(1).tolist()}
np.save(job["out"] + "/last_hidden_state.npy", out.last_hidden_state.numpy())
print("REPORT " + json.dumps(report))
"""


def keyword_clips(out) -> tuple[list, list[int]]:
    """PER_CLASS training clips of each of the first CLASSES keywords, decoded here (the
    clean venv has no audio decoder) as .npy."""
    labels = dict(row.split("\t") for row in (KEYWORDS / "train.lbl").read_text().split("\n") if row)
    paths, ys = [], []
    for row in list(csv.reader((KEYWORDS / "train.tsv").open(), delimiter="\t"))[1:]:
        key = row[0].rsplit(".", 1)[0]
        y = int(labels[key])
        if y < CLASSES and ys.count(y) < PER_CLASS:
            path = out / f"{len(paths)}.npy"
            np.save(path, read_audio(str(KEYWORDS / "audio" / row[0]), 16000).numpy())
            paths.append(path)
            ys.append(y)
    assert len(paths) == CLASSES * PER_CLASS
    return paths, ys


def test_a_fine_tune_starts_from_the_exported_folders(patch_checkpoint, finetuned_checkpoint, tmp_path):
    python = clean_python()
    enc, clf = export(patch_checkpoint, tmp_path / "enc"), export(finetuned_checkpoint, tmp_path / "clf")
    wavs, labels = keyword_clips(tmp_path)
    (tmp_path / "run").mkdir()
    job = {"encoder": str(enc), "classifier": str(clf), "wavs": [str(w) for w in wavs], "labels": labels,
           "classes": CLASSES, "out": str(tmp_path / "run")}
    report, stderr = run_clean(python, DRIVER, job, tmp_path)

    fresh = report["from_encoder"]
    assert fresh["missing"] == [] and fresh["n"] > 10 and fresh["max_diff"] == 0.0  # the exported encoder, exactly
    for head in (fresh["head"], report["reheaded"]["head"]):  # trunc_normal_(std=0.02), zero bias
        assert 0.015 < head["std"] < 0.025 and head["max"] <= 2.0 and head["bias"] == 0.0, head
    # A new LayerNorm at identity; re-heading keeps the classifier's (its size matches).
    assert fresh["head"]["norm_w"] == 0.0 and fresh["head"]["norm_b"] == 0.0
    assert report["reheaded"]["head"]["norm_w"] > 0.0
    # The new head is said once, by transformers' load report.
    loading = stderr.split("LOAD-ENCODER", 1)[1].split("LOADED-ENCODER", 1)[0]
    assert loading.count("head.weight") == 1 and "MISSING" in loading, loading[-2000:]
    assert "UNEXPECTED" not in loading

    train = report["train"]
    assert np.isfinite(train["logged"]).all() and train["steps"] == 20
    assert train["after"] < 0.95 * train["before"], train

    reheaded = report["reheaded"]
    assert reheaded["logits_finite"] and reheaded["shape"] == [2, 5]
    assert reheaded["missing"] == [] and reheaded["max_diff"] == 0.0

    # AutoModel of the classifier folder = the fine-tuned checkpoint's encoder.
    assert report["encoder_of_classifier"]["missing"] == [] and report["encoder_of_classifier"]["max_diff"] == 0.0
    ours = np.load(tmp_path / "run" / "last_hidden_state.npy")
    with torch.no_grad():  # extract_layers keeps autograd on (s3prl fine-tunes through it)
        ref = mae_ast.load(str(finetuned_checkpoint), device="cpu").extract_layers(
            [torch.from_numpy(np.load(w)) for w in wavs[:2]])
    rows = report["encoder_of_classifier"]["rows"]
    assert rows == (~ref["padding_mask"]).sum(1).tolist()
    for i, n in enumerate(rows):
        assert np.allclose(ours[i, :n], ref["last_hidden_state"][i, :n].numpy(), atol=1e-4)
