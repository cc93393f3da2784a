"""mae-ast-export-hf: exported folders load in transformers with trust_remote_code and
give the package's numbers; they load back with mae_ast.load / load_classifier.

The transformers side runs in a subprocess that cannot import mae_ast (nor fairseq,
torchaudio, soundfile, av): once in this venv with those blocked, and once in a clean
venv holding only torch, transformers and safetensors (built once under
.cache/hf_clean_env, rebuilt when the pins change; skipped with pip's reason when the
package registry cannot be reached). Outputs are compared, never just loading: weights
under a wrong prefix would still "load" (randomly initialised, one log line)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import mae_ast
from mae_ast import hear
from conftest import BIN, DEMO, ROOT, run_cli, task_cfg, tiny_model
from mae_ast.classifier import load_classifier
from mae_ast.data import read_audio
from mae_ast.hf import remote_code

pytest.importorskip("safetensors", reason="the hf extra is not installed (pip install -e '.[hf]')")

CLEAN_ENV = ROOT / ".cache" / "hf_clean_env"
BLOCKED = ("mae_ast", "fairseq", "torchaudio", "soundfile", "av")
CLIPS = [("speech_00.flac", 2.5), ("env_00.flac", 1.8), ("speech_05.flac", 2.2)]  # speech_05 is 22.05 kHz

DRIVER = r"""
import importlib.util, json, sys
job = json.load(open(sys.argv[1]))
if job["block"]:
    for name in job["blocked"]:
        sys.modules[name] = None  # any import of it raises ImportError
found = {n: sys.modules.get(n, 0) is not None and importlib.util.find_spec(n) is not None for n in job["blocked"]}
import numpy as np, torch, transformers
from transformers import AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification, pipeline
torch.set_num_threads(1)
wavs = [np.load(p) for p in job["wavs"]]
report = {"importable": found, "transformers": transformers.__version__, "folders": {}}
for folder, kind in job["folders"]:
    fe = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    inputs = fe(wavs, sampling_rate=16000, return_tensors="pt")
    entry = {"feature_extractor": type(fe).__name__}
    arrays = {"input_values": inputs["input_values"].numpy(), "attention_mask": inputs["attention_mask"].numpy()}
    with torch.no_grad():
        if kind == "encoder":
            model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
            out = model(**inputs, output_hidden_states=True)
            arrays["hidden_states"] = torch.stack(out.hidden_states).numpy()
            arrays["last_hidden_state"] = out.last_hidden_state.numpy()
            arrays["output_mask"] = out.attention_mask.numpy()
        else:
            model = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
            arrays["logits"] = model(**inputs).logits.numpy()
            pipe = pipeline("audio-classification", model=folder, trust_remote_code=True, device="cpu")
            entry["pipeline"] = [pipe({"raw": w, "sampling_rate": 16000}, top_k=3) for w in wavs]
            entry["id2label"] = {str(k): v for k, v in model.config.id2label.items()}
    entry["model"] = type(model).__name__
    np.savez(folder + ".outputs.npz", **arrays)
    report["folders"][folder] = entry
print("REPORT " + json.dumps(report))
"""


# ---- checkpoints and exports ------------------------------------------------------------

def save_checkpoint(model, path: Path) -> Path:
    """A model built in-process, saved as fairseq does (cfg + model): what mae_ast.load reads."""
    import dataclasses

    cfg = {"model": {**dataclasses.asdict(model.cfg), "_name": "mae_ast"}, "task": vars(model.task_cfg)}
    torch.save({"cfg": cfg, "model": model.state_dict()}, path)
    return path


def export(checkpoint: Path, out: Path) -> Path:
    proc = run_cli(BIN / "mae-ast-export-hf", checkpoint, out, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, patch_checkpoint, frame_checkpoint, finetuned_checkpoint) -> dict[str, Path]:
    """Real patch/frame pretraining runs and a real fine-tuned classifier; in-process
    encoders with deltas (384 columns) and with convolutional positions (weight-normed
    conv: weight_g/weight_v keys), and a multi-label copy of the classifier."""
    tmp = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    deltas = tiny_model(kt=16, kc=16, task=task_cfg(deltas=True))
    deltas.batch_norm.running_mean.fill_(-4.0)  # not the identity normalisation
    conv = tiny_model(kt=2, kc=128, enc_conv_pos=True, conv_pos=16, conv_pos_groups=4)
    state = torch.load(finetuned_checkpoint, weights_only=True)
    state["cfg"]["model"]["multi_label"] = True
    torch.save(state, tmp / "multi_label.pt")
    return {"patch": patch_checkpoint, "frame": frame_checkpoint, "deltas": save_checkpoint(deltas, tmp / "deltas.pt"),
            "conv": save_checkpoint(conv, tmp / "conv.pt"), "classifier": finetuned_checkpoint,
            "multi_label": tmp / "multi_label.pt"}


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory) -> dict[str, Path]:
    """The patch checkpoint through the CLI, the others through the function it calls."""
    from mae_ast.tools.export_hf import export as export_folder

    out = tmp_path_factory.mktemp("exported")
    folders = {"patch": export(checkpoints["patch"], out / "patch")}
    for name, ckpt in checkpoints.items():
        if name != "patch":
            export_folder(str(ckpt), str(out / name))
            folders[name] = out / name
    return folders


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> list[Path]:
    """Demo clips of three lengths as the package reads them, cut shorter than the
    classifier's 272 frames (so mae-ast-predict scores one window, as the pipeline does):
    .npy for the subprocess, float .wav beside them for mae-ast-predict."""
    import soundfile as sf

    out = tmp_path_factory.mktemp("wavs")
    paths = []
    for name, seconds in CLIPS:
        wav = read_audio(str(DEMO / "audio" / name), 16000)[: int(seconds * 16000)].numpy()
        np.save(out / f"{name}.npy", wav)
        sf.write(out / f"{name}.wav", wav, 16000, subtype="FLOAT")
        paths.append(out / f"{name}.npy")
    return paths


# ---- the clean environment --------------------------------------------------------------

# transformers' Trainer needs accelerate (what `pip install transformers[torch]` adds);
# the exported folders themselves do not.
TRAINER_REQUIREMENTS = ["accelerate>=1.1"]


def clean_requirements() -> list[str]:
    """torch as in this venv, transformers and safetensors as the hf extra pins them (and
    the Trainer's accelerate)."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["hf"]
    return [f"torch=={torch.__version__.split('+')[0]}", *extra, *TRAINER_REQUIREMENTS]


def clean_python() -> Path:
    """The clean venv's interpreter, built once (under a lock: parallel runs share it);
    when the pins change, what they add is installed into it (torch is not reinstalled)."""
    CLEAN_ENV.parent.mkdir(parents=True, exist_ok=True)
    requirements = clean_requirements()
    stamp, python = CLEAN_ENV / "requirements.json", CLEAN_ENV / "bin" / "python"
    with open(CLEAN_ENV.parent / "hf_clean_env.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and json.loads(stamp.read_text()) == requirements and python.exists():
            return python
        if not python.exists():
            subprocess.run(["rm", "-rf", str(CLEAN_ENV)], check=True)
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(CLEAN_ENV)], check=True, timeout=300)
            # torch (only torch and what it needs) by hard links from this venv: no second GB on disk
            subprocess.run([sys.executable, ROOT / "scripts" / "link_packages.py", CLEAN_ENV, "torch"], check=True,
                           timeout=300)
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], capture_output=True,
                              text=True, timeout=1500)
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
            subprocess.run(["rm", "-rf", str(CLEAN_ENV)], check=False)
            pytest.skip(f"cannot build the clean venv ({' '.join(requirements)}): {' / '.join(lines[-2:])}")
        stamp.write_text(json.dumps(requirements))
    return python


def run_clean(python: Path, code: str, job: dict, tmp: Path, timeout: int = 600) -> tuple[dict, str]:
    """Run ``code`` (reading its job from the JSON file in sys.argv[1], printing
    ``REPORT <json>``) offline in ``python``'s venv; (the report, stderr)."""
    path = tmp / "job.json"
    path.write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "TRANSFORMERS"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp / "hf_home"), OMP_NUM_THREADS="1",
               PYTHONNOUSERSITE="1")
    proc = subprocess.run([str(python), "-c", code, str(path)], capture_output=True, text=True, timeout=timeout,
                          cwd=tmp, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.split("REPORT ", 1)[1]), proc.stderr


def run_driver(python: Path, exported: dict[str, Path], wavs: list[Path], tmp: Path, block: bool) -> dict:
    folders = [[str(exported[n]), "classifier" if n in ("classifier", "multi_label") else "encoder"] for n in exported]
    job = {"block": block, "blocked": BLOCKED, "wavs": [str(w) for w in wavs], "folders": folders}
    return run_clean(python, DRIVER, job, tmp)[0]


# ---- comparisons --------------------------------------------------------------------------

def check_against_package(report: dict, exported: dict[str, Path], checkpoints: dict[str, Path], wavs: list[Path],
                          tmp: Path) -> None:
    clips = [torch.from_numpy(np.load(w)) for w in wavs]
    for name, folder in exported.items():
        if str(folder) not in report["folders"]:
            continue
        entry = report["folders"][str(folder)]
        out = np.load(str(folder) + ".outputs.npz")
        assert entry["feature_extractor"] == "MAEASTFeatureExtractor"
        if name in ("classifier", "multi_label"):
            clf = load_classifier(str(checkpoints[name]), device="cpu")
            assert entry["model"] == "MAEASTForAudioClassification"
            assert [entry["id2label"][str(i)] for i in range(len(clf.class_names))] == clf.class_names
            logits = torch.from_numpy(out["logits"])
            probs = torch.sigmoid(logits) if clf.multi_label else torch.softmax(logits, dim=-1)
            assert torch.allclose(probs, clf.scores(clips), atol=1e-4), name
            if name == "classifier":
                check_pipeline_matches_predict(entry["pipeline"], checkpoints[name], wavs, tmp)
            continue
        assert entry["model"] == "MAEASTModel"
        model = mae_ast.load(str(checkpoints[name]), device="cpu")
        assert out["input_values"].shape[-1] == model.feature_spec.width  # 384 with deltas
        hidden, mask = torch.from_numpy(out["hidden_states"]), out["output_mask"]
        assert np.array_equal(out["last_hidden_state"], out["hidden_states"][-1])
        for i, clip in enumerate(clips):  # each clip of the padded batch = the clip alone
            ref = model.extract_layers([clip])["hidden_states"]
            rows = ref[-1].shape[1]
            assert mask[i].sum() == rows and hidden.shape[0] == len(ref)
            for layer, want in enumerate(ref):
                assert torch.allclose(hidden[layer, i, :rows], want[0], atol=1e-4), (name, i, layer)


def check_pipeline_matches_predict(pipeline_out: list, checkpoint: Path, wavs: list[Path], tmp: Path) -> None:
    report = tmp / "predict.json"
    proc = run_cli(BIN / "mae-ast-predict", checkpoint, *[str(w)[:-4] + ".wav" for w in wavs], "--top-k", "3",
                   "--json", report, "--device", "cpu", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = json.loads(report.read_text())["files"]
    for ours, theirs in zip(files, pipeline_out):
        assert [t["label"] for t in ours["top"]] == [t["label"] for t in theirs]
        assert np.allclose([t["score"] for t in ours["top"]], [t["score"] for t in theirs], atol=1e-4)


def test_transformers_without_mae_ast_gives_the_package_outputs(exported, checkpoints, wavs, tmp_path):
    """In this venv, with mae_ast, fairseq, torchaudio, soundfile and av unimportable (an
    encoder and a classifier: the clean venv below runs them all)."""
    pytest.importorskip("transformers", reason="the hf extra is not installed (pip install -e '.[hf]')")
    exported = {name: exported[name] for name in ("patch", "classifier")}
    report = run_driver(Path(sys.executable), exported, wavs, tmp_path, block=True)
    assert not any(report["importable"].values()), report["importable"]
    check_against_package(report, exported, checkpoints, wavs, tmp_path)


def test_clean_env_with_only_torch_transformers_safetensors(exported, checkpoints, wavs, tmp_path):
    """A venv that never had mae_ast, fairseq or torchaudio installed (torch, transformers,
    safetensors, and accelerate for the Trainer tests), offline."""
    python = clean_python()
    report = run_driver(python, exported, wavs, tmp_path, block=False)
    assert not any(report["importable"].values()), report["importable"]
    assert report["transformers"].split(".")[0] == clean_requirements()[1].split(">=")[1].split(".")[0]
    check_against_package(report, exported, checkpoints, wavs, tmp_path)


# ---- the package side -------------------------------------------------------------------

def test_exported_folder_loads_back_with_the_package(exported, checkpoints, wavs):
    clips = [torch.from_numpy(np.load(w)) for w in wavs]
    for name in ("patch", "deltas"):
        a = mae_ast.load(str(checkpoints[name]), device="cpu").extract_layers(clips)
        b = mae_ast.load(str(exported[name]), device="cpu").extract_layers(clips)
        assert all(torch.equal(x, y) for x, y in zip(a["hidden_states"], b["hidden_states"]))
    for name in ("classifier", "multi_label"):
        a, b = load_classifier(str(checkpoints[name]), device="cpu"), load_classifier(str(exported[name]), device="cpu")
        assert (a.class_names, a.multi_label, a.target_length) == (b.class_names, b.multi_label, b.target_length)
        assert torch.equal(a.scores(clips), b.scores(clips))
    with pytest.raises(ValueError, match="an exported encoder, not a classifier"):
        load_classifier(str(exported["patch"]))
    # HEAR takes the folders too (a classifier's: its fine-tuned encoder, windows of its target_length).
    audio = torch.from_numpy(np.load(wavs[1]))[None]
    for name in ("patch", "classifier"):
        a, b = hear.load_model(str(checkpoints[name]), device="cpu"), hear.load_model(str(exported[name]), device="cpu")
        assert a.window_steps == b.window_steps
        assert torch.equal(hear.get_scene_embeddings(audio, a), hear.get_scene_embeddings(audio, b))


def test_fine_tuning_starts_from_an_exported_folder_as_from_its_pt(tmp_path):
    """model.pretrained_checkpoint=<exported folder> failed ("is a directory, not a checkpoint
    file"): fine-tuning read checkpoints its own way. Through open_checkpoint, a folder gives
    the encoder (weights, outputs, settings) its .pt gives, dropout overrides applied to both."""
    from types import SimpleNamespace

    from mae_ast.models.classifier_config import DROPOUT_FIELDS
    from mae_ast.models.classifier_encoder import classifier_encoder
    from mae_ast.tools.export_hf import export as export_folder
    from mae_ast.tasks.mae_ast_classification import MAE_AST_Classification_Task as Task

    torch.manual_seed(0)
    pt = save_checkpoint(tiny_model(enc_conv_pos=True, conv_pos=16, conv_pos_groups=4), tmp_path / "pre.pt")
    export_folder(str(pt), str(tmp_path / "folder"))
    x = torch.randn(2, 64, 128)
    for dropouts in ({}, {"dropout": 0.0, "encoder_layerdrop": 0.2}):
        built = [classifier_encoder(SimpleNamespace(**{**dict.fromkeys(DROPOUT_FIELDS), **dropouts}, features=None,
                                                    encoder=None, pretrained_checkpoint=str(path)), task=Task)
                 for path in (pt, tmp_path / "folder")]
        (a, a_cfg), (b, b_cfg) = built
        assert b.training and all(p.requires_grad for p in b.parameters())
        assert b_cfg == {k: a_cfg[k] for k in b_cfg} and b_cfg.items() >= dropouts.items()
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        with torch.no_grad():
            assert torch.equal(a.eval().forward_features(x)["x"], b.eval().forward_features(x)["x"])


@pytest.mark.slow
def test_fairseq_fine_tunes_from_an_exported_folder(patch_checkpoint, tmp_path):
    """The real CLI with model.pretrained_checkpoint=<folder>: it trains, and its provenance
    says the folder holds no pretraining record (leak checks cannot see that data)."""
    from conftest import finetune, write_data
    from mae_ast.tools.export_hf import export as export_folder

    export_folder(str(patch_checkpoint), str(tmp_path / "folder"))
    ck = finetune(tmp_path / "run", write_data(tmp_path / "data"), tmp_path / "folder", "optimization.max_update=1")
    opened = mae_ast.loading.open_checkpoint(str(ck / "checkpoint_last.pt"))
    pre = mae_ast.provenance.describe(opened.state)["pretraining"]
    assert pre["status"] == "unknown" and "exported folder" in pre["reason"], pre


def test_one_funnel_opens_every_kind_and_names_what_a_caller_cannot_use(exported, checkpoints, wavs, tmp_path):
    """open_checkpoint: each kind as itself (a pretraining .pt with its decoder, a folder
    without), the .pt's state without its weights; a folder refused where a .pt is needed;
    mae-ast-predict on an exported classifier scores it, its record unknown."""
    from mae_ast.checkpoints import CheckpointError
    from mae_ast.loading import open_checkpoint
    from mae_ast.tools.predict import main as predict

    pretraining, clf = open_checkpoint(str(checkpoints["patch"])), open_checkpoint(str(checkpoints["classifier"]))
    folder = open_checkpoint(str(exported["patch"]))
    assert (pretraining.kind, clf.kind, folder.kind) == ("pretraining", "classifier", "encoder")
    assert hasattr(pretraining.model, "decoder") and not hasattr(folder.model, "decoder")
    assert clf.encoder is clf.model.backbone and "model" not in clf.state and "provenance" in clf.state["task_state"]
    assert folder.state == {}
    with pytest.raises(CheckpointError, match=f"{exported['classifier']}: an exported classifier, not a pretraining "
                                              "checkpoint; pass the .pt it was exported from"):
        open_checkpoint(str(exported["classifier"]), kinds=("pretraining",))
    out = tmp_path / "p.json"
    assert predict([str(exported["classifier"]), str(wavs[0].with_suffix(".wav")), "--json", str(out),
                    "--device", "cpu"]) == 0
    report = json.loads(out.read_text())["provenance"]
    assert report["status"] == "unknown" and report["error"] == "an exported folder holds no provenance record"


def test_exported_code_is_the_package_hf_files(exported):
    """An exported folder carries mae_ast/hf's transformers files and the package modules
    they import, verbatim but renamed (their relative imports with them), importing nothing
    but what remote_code allows."""
    import ast

    for name in ("patch", "classifier"):
        files = sorted(p.name for p in exported[name].glob("*.py"))
        assert files == sorted(remote_code.FILES)
        for exported_name, own in remote_code.FILES.items():
            text = (exported[name] / exported_name).read_text()
            assert text == remote_code.generate(exported_name)
            package = (ROOT / "mae_ast" / own).read_text().splitlines()
            changed = [(a, b) for a, b in zip(package, text.splitlines(), strict=True) if a != b]
            assert all(a.startswith("from .") and b.startswith("from .") and "_mae_ast import" in b
                       for a, b in changed), changed
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                    top = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
                    assert top in remote_code.ALLOWED_IMPORTS, top


def test_the_exported_classifier_computes_the_loss_it_was_fine_tuned_with(exported, checkpoints, wavs, tmp_path):
    """config.json records criterion.loss, and the forward's loss with labels is that loss,
    averaged over clips: a single-label model trained with loss=bce (SSAST's Speech Commands
    recipe) keeps BCE when fine-tuned further in transformers, instead of cross-entropy."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from mae_ast.checkpoints import CheckpointError
    from mae_ast.tools.export_hf import export as export_folder

    state = torch.load(checkpoints["classifier"], weights_only=True)
    state["cfg"]["criterion"]["loss"] = "bce"
    torch.save(state, tmp_path / "bce.pt")
    export_folder(str(tmp_path / "bce.pt"), str(tmp_path / "bce"))
    clips = [np.load(w) for w in wavs]
    for folder, loss in ((exported["classifier"], "ce"), (tmp_path / "bce", "bce"), (exported["multi_label"], "bce")):
        assert json.loads((folder / "config.json").read_text())["loss"] == loss
        fe = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
        model = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
        classes = model.config.num_labels
        labels = torch.arange(len(clips)) % classes
        with torch.no_grad():
            out = model(**fe(clips, sampling_rate=16000, return_tensors="pt"), labels=labels)
        one_hot = torch.nn.functional.one_hot(labels, classes).float()
        if loss == "ce":
            want = torch.nn.CrossEntropyLoss()(out.logits, labels)
        else:  # mean over classes and clips, as torch's BCEWithLogitsLoss
            want = torch.nn.BCEWithLogitsLoss()(out.logits, one_hot)
        torch.testing.assert_close(out.loss, want)
        with torch.no_grad():  # 0/1 rows give the same loss as class indices
            again = model(**fe(clips, sampling_rate=16000, return_tensors="pt"), labels=one_hot).loss
        torch.testing.assert_close(again, want)
        with pytest.raises(ValueError, match=r"labels of shape \(\d+, 1\)"), torch.no_grad():
            model(**fe(clips, sampling_rate=16000, return_tensors="pt"), labels=labels[:, None])
    # A folder holds less than its .pt (the loss, provenance): it is not exported again.
    with pytest.raises(CheckpointError, match="already an exported folder; pass the .pt"):
        export_folder(str(exported["classifier"]), str(tmp_path / "again"))
