"""mae-ast-predict on a classifier from a short real fine-tuning run (tiny model, keyword set)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_cli
from test_finetune_e2e import KEYWORDS, finetune, pretrain

from mae_ast.classifier import load_classifier
from mae_ast.data import read_audio
from mae_ast.data.labels import read_label_descriptors
from mae_ast.tools.predict import window_starts

pytestmark = pytest.mark.slow  # its classifier is pretrained and fine-tuned by fairseq-hydra-train

BIN = Path(sys.executable).parent
LONG_SECONDS = 4


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory) -> Path:
    """Pretrained 3 updates, fine-tuned 20: enough for a real checkpoint, not for accuracy."""
    run = tmp_path_factory.mktemp("predict_run")
    return finetune(run / "finetune", pretrain(run / "pretrain", updates=3), updates=20)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """Four 1 s test keywords back to back: longer than the 128-frame (1.28 s) input."""
    lines = (KEYWORDS / "test.tsv").read_text().splitlines()[1:1 + LONG_SECONDS]
    wav = np.concatenate([sf.read(KEYWORDS / "audio" / line.split("\t")[0], dtype="float32")[0] for line in lines])
    path = tmp_path_factory.mktemp("long") / "four_words.flac"
    sf.write(path, wav, 16000)
    return path


def predict(*args: object) -> subprocess.CompletedProcess:
    return run_cli(BIN / "mae-ast-predict", *args, timeout=300)


def expected_windows(frames: int, length: int, hop: int) -> int:
    """Window count by hand: starts 0, hop, 2 hop ... <= frames - length, plus one ending at the end."""
    last = frames - length
    return last // hop + 1 + (last % hop != 0)


@pytest.mark.parametrize("hop_s", [None, 0.5])
def test_long_clip_windows_and_aggregate(classifier_checkpoint, long_clip, tmp_path, hop_s):
    clf = load_classifier(str(classifier_checkpoint), device="cpu")
    names = read_label_descriptors(str(KEYWORDS / "label_descriptors.csv")).names
    assert clf.class_names == names and not clf.multi_label
    wav = read_audio(str(long_clip), clf.feature_spec.sample_rate)
    frames = clf.feature_spec.frames(len(wav))
    hop = clf.target_length // 2 if hop_s is None else round(hop_s * 100)  # 10 ms frames
    assert frames > clf.target_length

    out = tmp_path / "pred.json"
    proc = predict(classifier_checkpoint, long_clip, "--top-k", 3, "--windows", "--json", out, "--device", "cpu",
                   *(["--hop", hop_s] if hop_s else []))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    (entry,) = report["files"]
    assert report["errors"] == [] and report["aggregate"] == "mean" and report["class_names"] == names

    n = expected_windows(frames, clf.target_length, hop)
    assert n >= 3 and len(entry["windows"]) == n == len(window_starts(frames, clf.target_length, hop))
    # The last window ends with the last whole frame: within one 10 ms shift of the end.
    assert entry["windows"][0]["start_s"] == 0
    assert entry["windows"][-1]["end_s"] == pytest.approx(LONG_SECONDS, abs=0.01)
    assert entry["windows"][1]["start_s"] == pytest.approx(hop * 0.01)
    # Aggregate = mean of the window probabilities, computed here from the classifier itself.
    windows = clf.scores_windows(wav, hop_frames=hop)
    assert windows.shape == (n, len(names))
    mean = windows.mean(dim=0)
    top = [item["label"] for item in entry["top"]]
    assert len(top) == 3 and set(top) <= set(names)
    assert top == [names[i] for i in mean.topk(3).indices.tolist()]
    assert [item["score"] for item in entry["top"]] == pytest.approx(mean.topk(3).values.tolist(), abs=1e-5)
    for item, scores in zip(entry["windows"], windows):
        assert item["top"][0]["label"] == names[int(scores.argmax())]
    # The printed timeline: one line per window.
    assert proc.stdout.count(" s  ") == n and str(long_clip) in proc.stdout


def test_max_aggregate_and_all_classes(classifier_checkpoint, long_clip, tmp_path):
    out = tmp_path / "pred.json"
    proc = predict(classifier_checkpoint, long_clip, "--aggregate", "max", "--top-k", 0, "--json", out,
                   "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(out.read_text())["files"]
    clf = load_classifier(str(classifier_checkpoint), device="cpu")
    windows = clf.scores_windows(read_audio(str(long_clip), 16000), hop_frames=clf.target_length // 2)
    got = {item["label"]: item["score"] for item in entry["top"]}
    assert len(got) == len(clf.class_names)  # --top-k 0: every class
    want = dict(zip(clf.class_names, windows.max(dim=0).values.tolist()))
    assert got == pytest.approx(want, abs=1e-5)


def test_short_clip_is_one_window(classifier_checkpoint, tmp_path):
    clip = KEYWORDS / "audio" / (KEYWORDS / "test.tsv").read_text().splitlines()[1].split("\t")[0]
    out = tmp_path / "pred.json"
    assert predict(classifier_checkpoint, clip, "--json", out, "--device", "cpu").returncode == 0
    (entry,) = json.loads(out.read_text())["files"]
    clf = load_classifier(str(classifier_checkpoint), device="cpu")
    scores = clf.scores([read_audio(str(clip), 16000)])[0]
    assert len(entry["windows"]) == 1 and len(entry["top"]) == 5
    assert entry["top"][0]["score"] == pytest.approx(float(scores.max()), abs=1e-5)


def test_bad_files_reported_and_exit_1(classifier_checkpoint, long_clip, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    (folder / "notes.txt").write_text("not audio, not walked")
    tiny = folder / "tick.flac"  # 10 ms: shorter than one 16-frame patch
    sf.write(tiny, np.zeros(160, dtype=np.float32), 16000)
    loud = np.sin(np.arange(16000) / 5.0) * 13000  # int16 values stored as float: off the [-1, 1] scale
    sf.write(folder / "loud.wav", loud.astype(np.float32), 16000, subtype="FLOAT")
    out = tmp_path / "pred.json"
    proc = predict(classifier_checkpoint, long_clip, folder, tmp_path / "missing.flac", "--json", out,
                   "--device", "cpu")
    assert proc.returncode == 1
    for name in ("broken.wav", "tick.flac", "missing.flac", "loud.wav"):
        assert name in proc.stderr
    assert "fewer than one patch" in proc.stderr and "re-save the file as PCM" in proc.stderr
    assert "notes.txt" not in proc.stderr + proc.stdout
    assert "4 input(s) could not be scored, 1 scored" in proc.stderr
    report = json.loads(out.read_text())
    assert [Path(f["path"]).name for f in report["files"]] == [long_clip.name]
    assert len(report["errors"]) == 4


def test_bad_checkpoint_exit_2(tmp_path, long_clip):
    bad = tmp_path / "ckpt.pt"
    torch.save({"nothing": 1}, bad)
    proc = predict(bad, long_clip)
    assert proc.returncode == 2 and "mae-ast-predict" in proc.stderr
