"""mae-ast-probe: the linear-probe number equals an independent scikit-learn pipeline on
the same features, on audio made here (four kinds of synthetic sound written as FLAC, not
the committed keyword set); the C grid and layer are picked on valid; bad data folders are
refused with the file named."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import BIN, run_cli
from mae_ast.data.datadir import write_split
from mae_ast.data.labels import LabelSet, write_label_descriptors
from mae_ast.data.manifest import read_manifest
from mae_ast.probe import C_GRID, ProbeConfig, fit_layer
from mae_ast.tools import probe as probe_cli

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
CLASSES = ["tone", "chirp", "hiss", "clicks"]
PER_CLASS = {"train": 10, "valid": 5, "test": 6}


def sound(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One second of a class, its parameters drawn per clip, under noise at a random level."""
    t = np.arange(RATE) / RATE
    if kind == "tone":
        wav = np.sin(2 * np.pi * rng.uniform(250, 700) * t)
    elif kind == "chirp":
        f0, f1 = rng.uniform(200, 500), rng.uniform(1500, 3000)
        wav = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / 2))
    elif kind == "hiss":  # high-passed noise: first difference of white noise
        wav = np.diff(rng.normal(0, 1, RATE + 1)) / 2
    else:
        wav = np.zeros(RATE)
        wav[:: int(RATE / rng.uniform(8, 30))] = 3.0
    wav = wav + rng.normal(0, rng.uniform(0.05, 0.4), RATE)
    return (0.25 * wav / np.abs(wav).max()).astype(np.float32)


def write_data(root: Path, seed: int = 0) -> Path:
    """A data folder as mae-ast-prepare writes it: FLAC clips, {split}.tsv/.lbl naming their clips."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    write_label_descriptors(str(root / "label_descriptors.csv"), CLASSES)
    label_set = LabelSet(CLASSES, CLASSES)
    for split, n in PER_CLASS.items():
        paths, labels = [], []
        for c, kind in enumerate(CLASSES):
            for i in range(n):
                path = root / "audio" / split / f"{kind}_{i}.flac"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, sound(kind, rng), RATE)
                paths.append(str(path))
                labels.append([c])
        write_split(str(root), split, str(root / "audio"), paths, [RATE] * len(paths), labels, label_set)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("probe") / "data")


@pytest.fixture
def one_thread():
    # As the CLI runs get (OMP_NUM_THREADS=1): on 2 shared cores torch's threads spin
    # against each other and other processes, many times slower on this tiny model.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cli(*args: str) -> subprocess.CompletedProcess:
    """The command as a user runs it."""
    return run_cli(BIN / "mae-ast-probe", *args, timeout=300)


def reference_features(model, data: Path, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Each clip alone through ``mae_ast.load(...).extract_layers``, every layer mean-pooled:
    (per layer (N, dim)), (N,) labels; no batching, no cache, so nothing of the probe's."""
    lines = (data / f"{split}.tsv").read_text().splitlines()
    root, entries = data / lines[0], [line.split("\t")[0] for line in lines[1:]]  # a relative root: from the folder
    layers, labels = [], []
    for entry, label_line in zip(entries, (data / f"{split}.lbl").read_text().splitlines()):
        wav, rate = sf.read(root / entry, dtype="float32")
        assert rate == RATE
        with torch.inference_mode():
            states = model.extract_layers([torch.from_numpy(wav)])["hidden_states"]
        layers.append([h[0].mean(0).numpy() for h in states])
        labels.append(int(label_line.split("\t")[1]))
    return [np.stack(per) for per in zip(*layers)], np.array(labels)


def sklearn_probe(x: dict, y: dict) -> tuple[float, float, float]:
    """(C, valid accuracy, test accuracy) of the textbook pipeline: a fresh StandardScaler +
    LogisticRegression per C, the best valid accuracy winning, ties to the lower valid log-loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for C in C_GRID:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000)).fit(x["train"], y["train"])
        valid = accuracy_score(y["valid"], clf.predict(x["valid"]))
        rank = (valid, -log_loss(y["valid"], clf.predict_proba(x["valid"]), labels=clf.classes_))
        if best is None or rank > best[0]:
            best = (rank, C, valid, accuracy_score(y["test"], clf.predict(x["test"])))
    return best[1:]


@pytest.mark.slow
def test_probe_cli_equals_sklearn_on_fresh_audio(frame_checkpoint, data, tmp_path, one_thread):
    out, cache = tmp_path / "probe.json", tmp_path / "cache"
    proc = cli(frame_checkpoint, data, "--layer", "all", "--json", out, "--cache", cache, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["n_clips"] == {s: n * len(CLASSES) for s, n in PER_CLASS.items()} | {"selection": 20}
    assert result["selection_split"] == "valid"
    assert result["C_grid"] == list(C_GRID)
    prov = result["provenance"]  # the pretraining run recorded its data: none of these clips
    assert prov["status"] == "recorded" and prov["training"] == 0, prov
    assert prov["probe_train_overlap"]["either"] == 0
    assert f"layer      {result['layer']} (best valid accuracy" in proc.stdout

    import mae_ast

    model, feats, y = mae_ast.load(str(frame_checkpoint), device="cpu"), {}, {}
    for split in PER_CLASS:
        feats[split], y[split] = reference_features(model, data, split)
    ref = {}
    for n in range(1, len(feats["train"]) + 1):
        ref[n] = sklearn_probe({s: f[n - 1] for s, f in feats.items()}, y)
    # Every layer's valid score as scikit-learn gets it; the best layer on valid wins.
    for row in result["layers"]:
        assert abs(row["valid_accuracy"] - ref[row["layer"]][1]) <= 0.01, (row, ref)
    assert ref[result["layer"]][1] == max(r[1] for r in ref.values())
    C, valid, test = ref[result["layer"]]
    assert abs(result["valid"]["accuracy"] - valid) <= 0.01 and abs(result["test"]["accuracy"] - test) <= 0.01
    assert test > 0.5, result  # four classes: chance is 0.25; the features carry the sound's kind

    # The cache is reused while the checkpoint and clip lists are unchanged: with a train
    # clip's audio gone, the features still come from the cache, all 40 clips of them ...
    (data / "audio" / "train" / "tone_0.flac").rename(tmp_path / "tone_0.flac")
    try:
        again = tmp_path / "again.json"
        assert probe_cli.main([str(frame_checkpoint), str(data), "--layer", "all", "--json", str(again),
                               "--cache", str(cache), "--device", "cpu"]) == 0
        assert json.loads(again.read_text())["test"] == result["test"]
        # ... and a changed clip list is extracted again (the missing clip named and left out).
        for name in ("train.tsv", "train.lbl"):
            lines = (data / name).read_text().splitlines(keepends=True)
            (data / name).write_text("".join(lines[:-1]))
        assert probe_cli.main([str(frame_checkpoint), str(data), "--json", str(again), "--cache", str(cache),
                               "--device", "cpu"]) == 0
        changed = json.loads(again.read_text())
        assert changed["n_clips"]["train"] == 38 and changed["skipped_clips"]["train"] == 1
    finally:
        (tmp_path / "tone_0.flac").rename(data / "audio" / "train" / "tone_0.flac")

    # A test clip that is a byte copy of a train clip: a loud warning and exit 3, unless allowed.
    leak = tmp_path / "leak"
    shutil.copytree(data, leak)
    shutil.copy(leak / "audio" / "train" / "tone_0.flac", leak / "audio" / "test" / "tone_0.flac")
    args = [str(frame_checkpoint), str(leak), "--json", str(again), "--device", "cpu"]
    assert probe_cli.main(args) == 3
    assert json.loads(again.read_text())["provenance"]["probe_train_overlap"] == {"by_path": 0, "by_content": 1,
                                                                                  "either": 1}
    assert probe_cli.main(args + ["--allow-overlap"]) == 0

    # A test clip that cannot be read: the test score leaves it out, and that exits 1 (as
    # mae-ast-evaluate does) unless --allow-skipped.
    root, *entries = (leak / "test.tsv").read_text().splitlines()
    gone = next(leak / root / e.split("\t")[0] for e in entries if "tone_0" not in e)  # root: from the folder
    gone.unlink()
    assert probe_cli.main(args + ["--allow-overlap"]) == 1
    assert json.loads(again.read_text())["skipped_clips"]["test"] == 1
    assert probe_cli.main(args + ["--allow-overlap", "--allow-skipped"]) == 0


def test_probe_never_chooses_on_test_clips_and_recomputes_changed_clips(frame_checkpoint, data, tmp_path,
                                                                         one_thread):
    """valid = test (ESC-50's folders): C and the layer are chosen on a seeded part of train,
    so test labels cannot move the choice; a cached clip whose file changed is extracted again."""
    folder, cache = tmp_path / "data", tmp_path / "cache"
    shutil.copytree(data, folder)
    for ext in ("tsv", "lbl"):
        shutil.copy(folder / f"test.{ext}", folder / f"valid.{ext}")
    args = [str(frame_checkpoint), str(folder), "--layer", "all", "--cache", str(cache), "--device", "cpu"]
    assert probe_cli.main(args + ["--json", str(tmp_path / "a.json")]) == 0
    first = json.loads((tmp_path / "a.json").read_text())
    assert first["selection_split"] == "train holdout" and first["n_clips"]["selection"] == 8  # 2 of 10 per class
    assert "held out" in first["selection"]
    # Other test (= valid) labels: the choice stays (features from the cache, labels read fresh).
    for split in ("valid", "test"):
        lines = (folder / f"{split}.lbl").read_text().splitlines()
        rotated = [f"{clip}\t{(int(label) + 1) % len(CLASSES)}" for clip, label in (ln.split("\t") for ln in lines)]
        (folder / f"{split}.lbl").write_text("\n".join(rotated) + "\n")
    assert probe_cli.main(args + ["--json", str(tmp_path / "b.json")]) == 0
    second = json.loads((tmp_path / "b.json").read_text())
    assert (second["layer"], second["C"], second["valid_by_C"]) == (first["layer"], first["C"], first["valid_by_C"])

    # A test clip rewritten under the same name: its features are computed again, not served stale.
    with np.load(cache / "test.mean.npz") as f:
        before = f["features"].copy()
    sf.write(folder / "audio" / "test" / "tone_0.flac", sound("clicks", np.random.default_rng(7)), RATE)
    assert probe_cli.main(args + ["--json", str(tmp_path / "c.json")]) == 0
    with np.load(cache / "test.mean.npz") as f:
        after = f["features"]
    row = [Path(p).name for p in read_manifest(str(folder / "test.tsv")).paths].index("tone_0.flac")  # all kept
    assert not np.allclose(after[:, row], before[:, row])
    assert np.array_equal(np.delete(after, row, axis=1), np.delete(before, row, axis=1))


# ---- the fit on features alone (fast) ---------------------------------------------------


def clustered(n: int, classes: int, dim: int, rng: np.random.Generator, means: np.ndarray | None = None):
    """Features of a post-LN-like encoder: class means on a large shared offset, noisy."""
    means = rng.normal(0, 0.5, (classes, dim)) if means is None else means
    y = rng.integers(0, classes, n)
    return (5.0 + means[y] + rng.normal(0, 1, (n, dim))).astype(np.float32), y, means


def test_fit_matches_sklearn_single_label_at_every_C():
    # Near-separable (few clips per feature), where weak regularisation is hardest to fit:
    # every C's valid accuracy must be scikit-learn's, not only the winner's (a fit warm-
    # started from the previous C stopped elsewhere there and changed the chosen C).
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    xt, yt, means = clustered(150, 8, 64, rng)
    xv, yv, _ = clustered(200, 8, 64, rng, means)
    xs, ys, _ = clustered(200, 8, 64, rng, means)
    fit = fit_layer(xt, yt, xv, yv, 8, False, ProbeConfig())
    for row in fit.by_C:
        ref = make_pipeline(StandardScaler(), LogisticRegression(C=row["C"], max_iter=5000)).fit(xt, yt)
        assert abs(row["accuracy"] - float(np.mean(ref.predict(xv) == yv))) <= 0.01 / 2, row
    C, valid, test = sklearn_probe({"train": xt, "valid": xv, "test": xs}, {"train": yt, "valid": yv, "test": ys})
    assert fit.C == C and abs(fit.valid["accuracy"] - valid) <= 0.01
    assert abs(float(np.mean(fit.clf.predict(xs) == ys)) - test) <= 0.01


def test_fit_matches_sklearn_multi_label_map():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(2)
    w = rng.normal(0, 1, (16, 4))

    def draw(n):
        x = rng.normal(0, 1, (n, 16)).astype(np.float32)
        return x, (x @ w + rng.normal(0, 1.5, (n, 4)) > 0.8).astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = draw(200), draw(100), draw(100)
    grid = (0.01, 0.1, 1.0)
    fit = fit_layer(xt, yt, xv, yv, 4, True, ProbeConfig(grid=grid))
    valid = {}
    for C in grid:
        clf = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=C))).fit(xt, yt)
        valid[C] = average_precision_score(yv, clf.predict_proba(xv), average="macro")
    assert fit.C == max(valid, key=valid.get) and abs(fit.valid["mAP"] - valid[fit.C]) <= 0.01
    ref = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=fit.C))).fit(xt, yt)
    assert abs(average_precision_score(ys, fit.clf.predict_proba(xs), average="macro")
               - average_precision_score(ys, ref.predict_proba(xs), average="macro")) <= 0.01


# ---- refusals: the data folder is read before the checkpoint is opened ----------------


def refused(args: list[str], capsys) -> str:
    assert probe_cli.main(args) == 2
    return capsys.readouterr().err


def small_folder(root: Path) -> Path:
    """Two classes, two clips per split (no model is run: each refusal comes first)."""
    root.mkdir()
    write_label_descriptors(str(root / "label_descriptors.csv"), ["a", "b"])
    label_set = LabelSet(["a", "b"], ["a", "b"])
    for split in ("train", "valid", "test"):
        paths = [str(root / f"{split}_{i}.wav") for i in range(2)]
        for p in paths:
            sf.write(p, np.zeros(RATE, dtype=np.float32), RATE)
        write_split(str(root), split, str(root), paths, [RATE, RATE], [[0], [1]], label_set)
    return root


def test_probe_refuses_a_missing_split(tmp_path, capsys):
    data = small_folder(tmp_path / "d")
    (data / "valid.tsv").unlink()
    err = refused([str(tmp_path / "none.pt"), str(data)], capsys)
    assert f"{data / 'valid.tsv'}: not found" in err and "train, valid and test" in err


def test_probe_refuses_labels_of_other_clips(tmp_path, capsys):
    data = small_folder(tmp_path / "d")
    (data / "test.lbl").write_text("other_0.wav\ta\nother_1.wav\tb\n")
    err = refused([str(tmp_path / "none.pt"), str(data)], capsys)
    assert f"{data / 'test.lbl'}:1" in err and "other_0.wav" in err


def test_probe_refuses_a_single_class_train_split(tmp_path, capsys):
    data = small_folder(tmp_path / "d")
    (data / "train.lbl").write_text("train_0.wav\ta\ntrain_1.wav\ta\n")
    err = refused([str(tmp_path / "none.pt"), str(data)], capsys)
    assert f"{data / 'train.lbl'}" in err and "every train clip has class 'a'" in err


def test_probe_refuses_several_labels_with_single_label(tmp_path, capsys):
    data = small_folder(tmp_path / "d")
    (data / "train.lbl").write_text("train_1.wav\ta\ntrain_0.wav\ta,b\n")  # the file's line 2, the manifest's 1
    err = refused([str(tmp_path / "none.pt"), str(data), "--single-label"], capsys)
    assert f"{data / 'train.lbl'}:2: 2 labels" in err and "without --single-label" in err


def test_probe_refuses_a_layer_below_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        probe_cli.parse_args([str(tmp_path / "none.pt"), str(tmp_path), "--layer", "0"])
    assert exit_.value.code == 2 and "layers count from 1" in capsys.readouterr().err


def test_probe_takes_several_labels_as_multi_label(tmp_path):
    from mae_ast.probe import read_splits

    data = small_folder(tmp_path / "d")
    assert read_splits(str(data), None)[2] is False
    (data / "train.lbl").write_text("train_0.wav\ta,b\ntrain_1.wav\ta\n")
    label_set, splits, multi_label = read_splits(str(data), None)
    assert multi_label is True and splits["train"].labels == [[0, 1], [0]]


def test_pooling_counts_only_valid_steps():
    from mae_ast.probe import pool_states

    h = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])  # (B=2, T=3, D=1)
    pad = torch.tensor([[False, False, True], [False, False, False]])
    assert pool_states([h], pad, "mean")[0, :, 0].tolist() == [2.0, 4.0]
    assert pool_states([h], pad, "max")[0, :, 0].tolist() == [3.0, 6.0]


def test_layers_are_named_by_the_one_rule_of_hear_and_extract():
    """loading.resolve_layers: -1 is the last layer in the probe as in HEAR and mae-ast-extract."""
    from mae_ast.probe import ProbeError, layers_to_fit

    assert layers_to_fit(None, 4) == [4] and layers_to_fit(-2, 4) == [3] and layers_to_fit("all", 2) == [1, 2]
    with pytest.raises(ProbeError, match=r"this checkpoint has layers 1\.\.4 \(-1 = last\)"):
        layers_to_fit(5, 4)
