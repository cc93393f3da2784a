"""mae-ast-evaluate, -predict, -extract and -show on what users get wrong or cannot see:
clips longer than the model's input, hops past a window, bad numbers, devices and output
paths, classes without positives, very long recordings. Issue 13, items 5, 6, 7, 12, 16,
20, 21. A tiny random-weight classifier checkpoint stands in for a fine-tuned one: these
are questions of bookkeeping, not of accuracy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import ROOT, tiny_model
from mae_ast.classifier import load_classifier, window_starts
from mae_ast.data import read_audio
from mae_ast.data.features import FeatureSpec
from mae_ast.models.builders import build_backbone
from mae_ast.models.mae_ast_classifier import MAE_AST_Classifier
from mae_ast.tools import evaluate, extract, predict, show
from test_input_contract import save_checkpoint

RATE = 16000
NAMES = ["dog", "rain", "speech"]
TARGET_LENGTH = 128  # frames: a 1.28 s input
ENCODER = {"ast_kernel_size_time": 16, "ast_kernel_size_chan": 16, "ast_kernel_stride_time": 16,
           "ast_kernel_stride_chan": 16, "encoder_layers": 1, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
           "encoder_attention_heads": 2, "enc_sine_pos": True, "decoder_embed_dim": 32}
FEATURES = {"sample_rate": RATE, "feature_dim": 128, "deltas": False}


def save_classifier(path: Path, multi_label: bool = False, names: list[str] = NAMES,
                    target_length: int = TARGET_LENGTH) -> Path:
    """A classifier checkpoint as fine-tuning writes one (self-contained cfg.model), random weights."""
    torch.manual_seed(0)
    settings = SimpleNamespace(head_dropout=0.0, freeze_encoder=False, pooling="mean", layer_decay=1.0,
                               head_lr_scale=1.0)
    model = MAE_AST_Classifier(settings, build_backbone(ENCODER, FEATURES), ENCODER, len(names))
    torch.nn.init.normal_(model.head.weight, std=1.0)  # scores that differ between windows
    cfg = {"model": {"_name": "mae_ast_classifier", "encoder": ENCODER, "features": FEATURES,
                     "class_names": list(names), "multi_label": multi_label, "target_length": target_length}}
    torch.save({"cfg": cfg, "model": model.state_dict()}, path)
    return path


def noise(seconds: float, seed: int) -> np.ndarray:
    """Noise whose level changes every 0.5 s, so windows at different places score differently."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    level = np.repeat(rng.uniform(0.01, 0.5, size=n // 8000 + 1), 8000)[:n]
    return (level * rng.standard_normal(n)).astype(np.float32)


def write_split(folder: Path, clips: dict[str, tuple[float, str]]) -> Path:
    """A data folder with ``test.tsv``/``test.lbl``/``label_descriptors.csv``: name -> (seconds, labels)."""
    (folder / "audio").mkdir(parents=True)
    (folder / "label_descriptors.csv").write_text(
        "index,mid,display_name\n" + "".join(f"{i},/m/{n},{n}\n" for i, n in enumerate(NAMES)))
    rows, labels = [str(folder / "audio")], []
    for seed, (name, (seconds, label)) in enumerate(clips.items()):
        wav = noise(seconds, seed)
        sf.write(folder / "audio" / name, wav, RATE)
        rows.append(f"{name}\t{len(wav)}")
        labels.append(f"{name}\t{label}")
    (folder / "test.tsv").write_text("\n".join(rows) + "\n")
    (folder / "test.lbl").write_text("\n".join(labels) + "\n")
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_classifier(tmp_path_factory.mktemp("clf") / "single.pt")


@pytest.fixture(scope="module")
def multi_ckpt(tmp_path_factory) -> Path:
    return save_classifier(tmp_path_factory.mktemp("clf") / "multi.pt", multi_label=True)


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """Three 3 s clips (longer than the 1.28 s input) and one 1 s clip."""
    return write_split(tmp_path_factory.mktemp("data") / "split", {
        "a.flac": (3.0, "dog"), "b.flac": (3.0, "rain"), "c.flac": (3.0, "speech"), "d.flac": (1.0, "dog")})


@pytest.fixture(scope="module")
def pretrain_ckpt(tmp_path_factory) -> str:
    torch.manual_seed(0)
    return save_checkpoint(tiny_model(kt=16, kc=16, dim=32, layers=1), tmp_path_factory.mktemp("pre") / "pre.pt")


def run(tool, *args: object) -> int:
    """A tool's main() in this process; parser errors (SystemExit) give their exit code."""
    try:
        return tool.main([str(a) for a in args])
    except SystemExit as exit_:
        return int(exit_.code)


def strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# ---- item 5: evaluate cuts long clips (and says so); both tools offer the other mode --------


def test_evaluate_counts_cut_clips_and_windows_on_request(ckpt, split, tmp_path, capsys):
    out = tmp_path / "start.json"
    assert run(evaluate, ckpt, split, "--json", out, "--device", "cpu") == 0
    start = strict_json(out)
    err = capsys.readouterr().err
    assert start["crop"] == "start" and start["n_cropped"] == 3 and start["n_clips"] == 4
    assert "3 of 4 clips are longer than the model's input" in err and "--crop windows" in err

    out = tmp_path / "windows.json"
    assert run(evaluate, ckpt, split, "--crop", "windows", "--json", out, "--device", "cpu") == 0
    windows = strict_json(out)
    assert windows["crop"] == "windows" and windows["n_cropped"] == 3 and windows["hop_s"] == pytest.approx(0.64)
    assert "scored in sliding windows" in capsys.readouterr().err

    # Windows mode = mae-ast-predict's file scores (the same library function); start = the first window.
    clf = load_classifier(str(ckpt), device="cpu")
    dataset = evaluate.open_split(clf, str(split), "test")
    scores, _, skipped, n_long = evaluate.score_split(clf, dataset, 4, "windows", clf.default_hop)
    first, *_ = evaluate.score_split(clf, dataset, 4, "start")
    assert skipped == 0 and n_long == 3
    for i, name in enumerate(["a.flac", "b.flac", "c.flac", "d.flac"]):
        wav = read_audio(str(split / "audio" / name), RATE)
        pred = predict.predict_file(clf, str(split / "audio" / name), clf.default_hop, "mean", "windows", 32)
        torch.testing.assert_close(torch.from_numpy(scores[i]), pred.scores, rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(first[i]), clf.scores([wav])[0], rtol=0, atol=1e-5)
        assert (len(pred.window_scores) > 1) == (name != "d.flac")
    assert not np.allclose(scores[:3], first[:3], atol=1e-3)  # the two modes do differ on long clips


def test_predict_reports_windowed_files_and_offers_start_crop(ckpt, split, tmp_path, capsys):
    files = [split / "audio" / "a.flac", split / "audio" / "d.flac"]
    out = tmp_path / "p.json"
    assert run(predict, ckpt, *files, "--json", out, "--device", "cpu") == 0
    report = strict_json(out)
    assert report["crop"] == "windows" and report["n_windowed"] == 1 and report["n_cropped"] == 0
    assert "1 of 2 file(s) longer than the model's 1.28 s input were scored in sliding windows" in \
        capsys.readouterr().err

    assert run(predict, ckpt, *files, "--crop", "start", "--json", out, "--device", "cpu", "--top-k", 0) == 0
    report = strict_json(out)
    assert report["n_cropped"] == 1 and report["n_windowed"] == 0
    assert "cut to their first window (--crop start)" in capsys.readouterr().err
    clf = load_classifier(str(ckpt), device="cpu")
    entry = report["files"][0]
    assert len(entry["windows"]) == 1 and entry["windows"][0]["end_s"] == pytest.approx(1.295)
    want = dict(zip(NAMES, clf.scores([read_audio(str(files[0]), RATE)])[0].tolist()))
    assert {t["label"]: t["score"] for t in entry["top"]} == pytest.approx(want, abs=1e-5)
    assert run(predict, ckpt, *files, "--crop", "start", "--hop", "0.5") == 2  # a hop means nothing there


# ---- item 6: a hop longer than a window left most of a file unseen ---------------------------


def test_predict_refuses_a_hop_longer_than_one_window(ckpt, split, tmp_path, capsys):
    long = tmp_path / "long.flac"
    sf.write(long, noise(33.0, 1), RATE)
    assert run(predict, ckpt, long, "--hop", 100, "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert "--hop 100: a hop of 100 s is longer than the model's 1.28 s input" in err and "at most 1.28 s" in err
    assert run(evaluate, ckpt, split, "--crop", "windows", "--hop", 1.5, "--device", "cpu") == 2
    assert "--hop 1.5: a hop of 1.5 s is longer" in capsys.readouterr().err
    assert run(predict, ckpt, long, "--hop", 1.28, "--device", "cpu", "--json", tmp_path / "p.json") == 0
    windows = strict_json(tmp_path / "p.json")["files"][0]["windows"]
    # Every second of the file is inside some window: no gap between consecutive windows.
    assert windows[0]["start_s"] == 0 and windows[-1]["end_s"] == pytest.approx(33.0, abs=0.01)
    assert all(b["start_s"] <= a["end_s"] for a, b in zip(windows, windows[1:]))


@pytest.mark.parametrize("frames,length,hop", [(3300, 128, 128), (3300, 128, 1), (129, 128, 64), (1000, 128, 97),
                                               (128, 128, 64), (20, 128, 5)])
def test_window_starts_cover_every_frame(frames, length, hop):
    starts = window_starts(frames, length, hop)
    covered = np.zeros(max(frames, length), dtype=bool)
    for s in starts:
        covered[s:s + length] = True
    assert covered.all() and starts == sorted(set(starts)) and starts[0] == 0
    assert starts[-1] == max(frames - length, 0)
    with pytest.raises(ValueError, match="never scored"):
        window_starts(frames, length, length + 1)


# ---- items 7 and 12: numbers, devices and output paths refused up front --------------------


@pytest.mark.parametrize("value", ["-2", "0", "two"])
def test_extract_refuses_a_batch_size_below_one(pretrain_ckpt, split, tmp_path, capsys, value):
    out = tmp_path / "feats"
    assert run(extract, pretrain_ckpt, split / "audio", "--out", out, "--batch-size", value, "--device", "cpu") == 2
    assert "--batch-size" in capsys.readouterr().err and not out.exists()


def test_extract_still_writes_with_a_valid_batch_size(pretrain_ckpt, split, tmp_path, capsys):
    out = tmp_path / "deep" / "feats"
    assert run(extract, pretrain_ckpt, split / "audio", "--out", out, "--batch-size", 3, "--device", "cpu") == 0
    assert "wrote 4 feature files" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a.flac.npy", "b.flac.npy", "c.flac.npy", "d.flac.npy"]


@pytest.mark.parametrize("tool", ["predict", "evaluate", "extract"])
@pytest.mark.parametrize("device,message", [("bogus", "'bogus' is not a device"),
                                            ("cuda:99", "cuda:99"), ("tpu", "not a device")])
def test_bad_device_is_one_line_and_exit_2(tool, device, message, ckpt, pretrain_ckpt, split, tmp_path, capsys):
    args = {"predict": (predict, ckpt, split / "audio" / "a.flac"),
            "evaluate": (evaluate, ckpt, split),
            "extract": (extract, pretrain_ckpt, split / "audio", "--out", tmp_path / "f")}[tool]
    assert run(*args, "--device", device) == 2
    err = capsys.readouterr().err
    assert message in err and "--device" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_says_use_cpu(ckpt, split, capsys):
    assert run(predict, ckpt, split / "audio" / "a.flac", "--device", "cuda") == 2
    assert "CUDA is not available on this machine; use --device cpu" in capsys.readouterr().err


@pytest.mark.parametrize("tool", ["predict", "evaluate"])
def test_batch_size_zero_refused(tool, ckpt, split, capsys):
    args = (predict, ckpt, split / "audio" / "a.flac") if tool == "predict" else (evaluate, ckpt, split)
    assert run(*args, "--batch-size", 0, "--device", "cpu") == 2
    assert "--batch-size: must be >= 1" in capsys.readouterr().err


def test_outputs_into_missing_folders_are_written(ckpt, pretrain_ckpt, split, tmp_path):
    assert run(predict, ckpt, split / "audio" / "d.flac", "--json", tmp_path / "p" / "q" / "pred.json",
               "--device", "cpu") == 0
    assert strict_json(tmp_path / "p" / "q" / "pred.json")["files"]
    assert run(evaluate, ckpt, split, "--json", tmp_path / "e" / "metrics.json", "--device", "cpu") == 0
    assert strict_json(tmp_path / "e" / "metrics.json")["n_clips"] == 4
    pytest.importorskip("matplotlib")
    assert run(show, pretrain_ckpt, split / "audio" / "d.flac", "--out", tmp_path / "s" / "fig.png") == 0
    assert (tmp_path / "s" / "fig.png").read_bytes()[:4] == b"\x89PNG"


def test_unwritable_outputs_refused_before_the_work(ckpt, pretrain_ckpt, split, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cpu = ("--device", "cpu")
    for args, named in [((predict, ckpt, split / "audio" / "d.flac", "--json", blocker / "p.json", *cpu), blocker),
                        ((evaluate, ckpt, split, "--json", blocker / "m.json", *cpu), blocker),
                        ((evaluate, ckpt, split, "--json", tmp_path, *cpu), "is a folder; give a file name"),
                        ((show, pretrain_ckpt, split / "audio" / "d.flac", "--out", blocker / "s" / "f.png"), blocker),
                        ((extract, pretrain_ckpt, split / "audio", "--out", blocker, *cpu), "is a file, not a folder")]:
        assert run(*args) == 2, args
        err = capsys.readouterr().err
        assert str(named) in err and "Traceback" not in err


# ---- item 16: what predict's JSON holds per window -----------------------------------------


def test_predict_json_windows_hold_top_k_labels_as_documented(ckpt, split, tmp_path):
    out = tmp_path / "p.json"
    assert run(predict, ckpt, split / "audio" / "a.flac", "--top-k", 2, "--json", out, "--device", "cpu") == 0
    windows = strict_json(out)["files"][0]["windows"]
    assert len(windows) == 4 and all(len(w["top"]) == 2 for w in windows)
    readme = (ROOT / "README.md").read_text()
    assert "every window's scores" not in readme
    assert "its `--top-k` labels" in readme


# ---- item 20: multi-label metrics when a class has no positive clip ------------------------


def test_evaluate_multi_label_class_without_positive_is_counted_and_json_strict(multi_ckpt, tmp_path, capsys):
    # "dog" in every clip (no negative), "rain" in none (no positive): only "speech" has an AUC.
    data = write_split(tmp_path / "ml", {"a.flac": (1.0, "dog,speech"), "b.flac": (1.0, "dog"),
                                         "c.flac": (2.0, "dog,speech"), "d.flac": (1.0, "dog")})
    out = tmp_path / "m.json"
    assert run(evaluate, multi_ckpt, data, "--json", out, "--device", "cpu") == 0
    result = strict_json(out)
    assert result["n_classes"] == 3 and result["classes_without_positive"] == 1
    assert result["classes_without_negative"] == 1
    err = capsys.readouterr().err
    assert "1 of 3 classes have no positive clip in this split: left out of mAP and AUC" in err

    sk = pytest.importorskip("sklearn.metrics")
    clf = load_classifier(str(multi_ckpt), device="cpu")
    scores, targets, _, _ = evaluate.score_split(clf, evaluate.open_split(clf, str(data), "test"), 4)
    kept = [0, 2]  # classes with a positive: AudioSet's / scikit-learn's per-class AP, averaged
    assert result["mAP"] == pytest.approx(sk.average_precision_score(targets[:, kept], scores[:, kept]), abs=1e-6)
    assert result["auc"] == pytest.approx(sk.roc_auc_score(targets[:, 2], scores[:, 2]), abs=1e-6)

    # No class with both positives and negatives: AUC and d' cannot be computed: null, not NaN.
    none = write_split(tmp_path / "none", {"a.flac": (1.0, "dog"), "b.flac": (1.0, "dog")})
    assert run(evaluate, multi_ckpt, none, "--json", out, "--device", "cpu") == 0
    result = strict_json(out)
    assert result["auc"] is None and result["d_prime"] is None and result["mAP"] == 1.0
    assert result["classes_without_positive"] == 2 and result["classes_without_negative"] == 1
    assert re.search(r"^auc +n/a$", capsys.readouterr().out, re.M)


# ---- item 21: long recordings in bounded memory --------------------------------------------


def test_windows_go_through_the_model_in_bounded_batches(ckpt, monkeypatch):
    clf = load_classifier(str(ckpt), device="cpu")
    wav = torch.from_numpy(noise(60.0, 3))
    want = clf.scores_windows(wav, hop_frames=16, batch_size=10_000)
    sizes = []
    forward = clf.model.forward
    monkeypatch.setattr(clf.model, "forward", lambda x, *a, **k: sizes.append(len(x)) or forward(x, *a, **k))
    got = clf.scores_windows(wav, hop_frames=16, batch_size=7)
    assert len(got) == len(window_starts(clf.feature_spec.frames(len(wav)), TARGET_LENGTH, 16)) == sum(sizes)
    assert max(sizes) == 7 and len(sizes) > 40
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_fbank_in_chunks_equals_fbank_at_once(monkeypatch):
    spec = FeatureSpec(deltas=True)
    wav = torch.from_numpy(noise(3.0, 5))
    whole = spec.compute(wav)
    monkeypatch.setattr("mae_ast.data.features.FBANK_CHUNK_FRAMES", 37)
    torch.testing.assert_close(spec.compute(wav), whole, rtol=0, atol=1e-5)
