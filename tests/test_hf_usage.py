"""Issue 22 items 2-8: an exported folder behaves as transformers users expect, in a clean
venv (only torch, transformers, safetensors; offline). One driver run answers every test
of this module (module-scoped), each test asserting its own item."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import mae_ast
from test_hf_export import clean_python, export, run_clean

pytest.importorskip("safetensors", reason="the hf extra is not installed (pip install -e '.[hf]')")

DRIVER = r"""
import json, math, sys, warnings
import numpy as np, torch
from safetensors import safe_open
from transformers import AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification, pipeline
torch.manual_seed(0)
torch.set_num_threads(1)
job = json.load(open(sys.argv[1]))
enc, clf = job["encoder"], job["classifier"]
rng = np.random.default_rng(0)
long, short = (rng.standard_normal(n).astype(np.float32) * 0.1 for n in (32000, 12000))
report = {}
fe = AutoFeatureExtractor.from_pretrained(enc, trust_remote_code=True)
model = AutoModel.from_pretrained(enc, trust_remote_code=True).eval()
mean = float(model.batch_norm.running_mean)

def stage(name):
    print(f"STAGE {name}", file=sys.stderr, flush=True)

# 2. Padding reads as silence; a padded batch without its mask is warned about, once.
stage("padding")
batch = fe([long, short], sampling_rate=16000, return_tensors="pt")
valid = int(batch["attention_mask"][1].sum())
with torch.no_grad():
    alone = model(**fe([short], sampling_rate=16000, return_tensors="pt")).last_hidden_state[0]
    masked = model(**batch).last_hidden_state[1, : alone.shape[0]]
    unmasked = [model(input_values=batch["input_values"]).last_hidden_state for _ in range(2)]
    same_length = model(input_values=fe([long, long], sampling_rate=16000, return_tensors="pt")["input_values"])
report["padding"] = {"pad_values": np.unique(batch["input_values"][1, valid:].numpy()).tolist(), "mean": mean,
                     "padding_value": fe.padding_value, "masked_diff": float((masked - alone).abs().max())}
stage("padding-done")

# 3. The usual SequenceFeatureExtractor arguments, unknown ones refused.
stage("arguments")
def shape(**kw):
    out = fe([long, short], **kw)
    return {k: list(np.asarray(v).shape) for k, v in out.items()}
args = {"default": shape(sampling_rate=16000),
        "max_length": shape(sampling_rate=16000, padding="max_length", max_length=250),
        "truncation": shape(sampling_rate=16000, padding="max_length", max_length=50, truncation=True),
        "multiple": shape(sampling_rate=16000, pad_to_multiple_of=64),
        "no_mask": shape(sampling_rate=16000, return_attention_mask=False),
        "no_padding": [len(x) for x in fe([long, short], sampling_rate=16000, padding=False)["input_values"]]}
errors = {}
for name, kw in {"misspelt": {"sampling_rte": 16000}, "rate": {"sampling_rate": 8000},
                 "too_long": {"sampling_rate": 16000, "padding": "max_length", "max_length": 50},
                 "stack": {"sampling_rate": 16000, "padding": False, "return_tensors": "pt"}}.items():
    try:
        fe([long, short], **kw)
        errors[name] = None
    except (TypeError, ValueError) as err:
        errors[name] = f"{type(err).__name__}: {err}"
stage("no-rate")
fe([short])
stage("no-rate-done")
report["arguments"] = {"shapes": args, "errors": errors}

# 4. A list of floats is one clip.
as_list = fe(short.tolist(), sampling_rate=16000)["input_values"]
report["list"] = {"shape": list(np.asarray(as_list).shape),
                  "equal": bool(np.array_equal(as_list, fe(short, sampling_rate=16000)["input_values"]))}

# 5. Clips shorter than one patch are padded, in the extractor and the pipeline.
tiny = fe([rng.standard_normal(320).astype(np.float32) * 0.1], sampling_rate=16000, return_tensors="pt")
with torch.no_grad():
    tiny_out = model(**tiny).last_hidden_state
pipe = pipeline("audio-classification", model=clf, trust_remote_code=True, device="cpu")
scores = pipe({"raw": rng.standard_normal(320).astype(np.float32) * 0.1, "sampling_rate": 16000}, top_k=2)
report["short"] = {"shape": list(tiny["input_values"].shape), "mask": tiny["attention_mask"].tolist(),
                   "finite": bool(torch.isfinite(tiny_out).all()), "rows": list(tiny_out.shape),
                   "scores": [s["score"] for s in scores]}

# 6. return_dict from the config, the modality, bf16 with float32 inputs, read-only arrays.
tuple_model = AutoModel.from_pretrained(enc, trust_remote_code=True, return_dict=False).eval()
with torch.no_grad():
    out = tuple_model(**batch)
    bf16 = AutoModel.from_pretrained(enc, trust_remote_code=True, dtype=torch.bfloat16).eval()
    fp32 = model(**batch).last_hidden_state
    low = bf16(**batch).last_hidden_state
frozen = np.frombuffer(long.tobytes(), dtype=np.float32)  # read-only, as the pipeline's file reader gives
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fe(frozen, sampling_rate=16000, return_tensors="pt")
report["conventions"] = {"tuple": isinstance(out, tuple), "modalities": list(np.atleast_1d(model.input_modalities)),
                         "bf16_dtype": str(low.dtype), "bf16_diff": float((low.float() - fp32).abs().max()),
                         "fp32_scale": float(fp32.abs().max()), "warnings": [str(w.message) for w in caught]}

# 7. The folder holds no sine table; the model recomputes it.
with safe_open(enc + "/model.safetensors", "pt") as f:
    keys = list(f.keys())
pe = model.enc_sine_pos_embed.pe if model.enc_sine_pos_embed is not None else None
if pe is not None:
    dim, n = pe.shape[2], min(pe.shape[1], 1000)  # float32 sines drift from float64 far out
    pos = np.arange(n)[:, None]
    div = np.exp(np.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    want = np.zeros((n, dim))
    want[:, 0::2], want[:, 1::2] = np.sin(pos * div), np.cos(pos * div)
report["sine"] = {"keys": [k for k in keys if k.endswith(".pe")], "has_table": pe is not None,
                  "table_diff": None if pe is None else float(np.abs(pe[0, :n].numpy() - want).max()),
                  "persistent": any(k.endswith(".pe") for k in model.state_dict())}

# 8. Gradient checkpointing and SDPA, as transformers' audio encoders.
train = AutoModel.from_pretrained(enc, trust_remote_code=True, dropout=0.0, attention_dropout=0.0).train()
def grads(m):
    m.zero_grad()
    m(**batch).last_hidden_state.square().mean().backward()
    return {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
plain = grads(train)
train.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
checkpointed = grads(train)
eager = AutoModel.from_pretrained(enc, trust_remote_code=True, attn_implementation="eager").eval()
with torch.no_grad():
    eager_out = eager(**batch).last_hidden_state
report["implementation"] = {
    "supports_gc": type(model).supports_gradient_checkpointing, "gc_on": train.is_gradient_checkpointing,
    "grad_diff": max(float((plain[k] - checkpointed[k]).abs().max()) for k in plain), "n_grads": len(plain),
    "default_attn": model.config._attn_implementation, "supports_sdpa": type(model)._supports_sdpa,
    "eager_attn": eager.config._attn_implementation, "eager_diff": float((eager_out - fp32).abs().max())}
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def usage(patch_checkpoint, finetuned_checkpoint, tmp_path_factory) -> dict:
    python = clean_python()
    tmp = tmp_path_factory.mktemp("hf_usage")
    job = {"encoder": str(export(patch_checkpoint, tmp / "enc")), "classifier": str(export(finetuned_checkpoint,
                                                                                           tmp / "clf"))}
    report, stderr = run_clean(python, DRIVER, job, tmp)
    stages = {}
    for part in stderr.split("STAGE ")[1:]:
        name, _, text = part.partition("\n")
        stages[name] = text
    return {**report, "stderr": stages, "folders": job}


def test_padding_is_the_input_mean_and_a_missing_mask_is_warned_once(usage, patch_checkpoint):
    """Item 2: the extractor pads with the value the encoder's BatchNorm maps to 0 (the
    input mean, as HEAR pads), not 0.0 (a loud log-mel value); with the mask a padded clip
    is the clip alone; without it, one warning for any number of padded batches."""
    pad = usage["padding"]
    mean = float(mae_ast.load(str(patch_checkpoint), device="cpu").batch_norm.running_mean)
    assert pad["mean"] == pytest.approx(mean, abs=1e-6) and mean != 0.0
    assert pad["padding_value"] == pytest.approx(mean, abs=1e-6)
    assert pad["pad_values"] == [pytest.approx(mean, abs=1e-6)]
    assert pad["masked_diff"] < 1e-4
    warned = usage["stderr"]["padding"]
    assert warned.count("padded batch came without its attention_mask") == 1, warned[-2000:]


def test_the_usual_extractor_arguments_work_and_unknown_ones_are_refused(usage):
    """Item 3: padding / max_length / truncation / pad_to_multiple_of / return_attention_mask;
    a misspelt argument is a TypeError; no sampling_rate is warned about."""
    shapes, errors = usage["arguments"]["shapes"], usage["arguments"]["errors"]
    assert shapes["default"]["input_values"][:2] == [2, 198] and shapes["default"]["attention_mask"] == [2, 198]
    assert shapes["max_length"]["input_values"][:2] == [2, 250]
    assert shapes["truncation"]["input_values"][:2] == [2, 50]
    assert shapes["multiple"]["input_values"][:2] == [2, 256]
    assert "attention_mask" not in shapes["no_mask"]
    assert usage["arguments"]["shapes"]["no_padding"] == [198, 73]
    assert errors["misspelt"].startswith("TypeError") and "sampling_rte" in errors["misspelt"]
    assert "8000 Hz" in errors["rate"] and "truncation=True" in errors["too_long"] and "padding" in errors["stack"]
    assert "It is strongly recommended to pass the `sampling_rate` argument" in usage["stderr"]["no-rate"]


def test_a_list_of_floats_is_one_clip(usage):
    """Item 4: transformers' convention."""
    assert usage["list"]["shape"][:2] == [1, 73] and usage["list"]["equal"]


def test_clips_shorter_than_one_patch_are_padded(usage):
    """Item 5: 320 samples (shorter than one 25 ms window) give one patch of frames, all of
    them the clip's own, in the extractor and the pipeline."""
    short = usage["short"]
    assert short["shape"][:2] == [1, 16] and short["mask"] == [[1] * 16]
    assert short["finite"] and short["rows"][:2] == [1, 1]
    assert len(short["scores"]) == 2 and all(np.isfinite(short["scores"]))


def test_transformers_conventions(usage):
    """Item 6: config.return_dict=False gives tuples; the modality is audio; a bf16 model
    takes the extractor's float32; a read-only array raises no NumPy/torch warning."""
    conv = usage["conventions"]
    assert conv["tuple"] and conv["modalities"] == ["audio"]
    assert conv["bf16_dtype"] == "torch.bfloat16" and conv["bf16_diff"] < 0.1 * conv["fp32_scale"]
    assert not [w for w in conv["warnings"] if "writable" in w], conv["warnings"]


def test_the_folder_holds_no_sine_table(usage, patch_checkpoint):
    """Item 7: the table is recomputed (a non-persistent buffer) and the folder is about
    the size of its weights; the .pt checkpoint keeps the key (strict loaders need it)."""
    from safetensors import safe_open

    sine = usage["sine"]
    assert sine["has_table"] and sine["keys"] == [] and not sine["persistent"] and sine["table_diff"] < 1e-4
    assert "enc_sine_pos_embed.pe" in torch.load(patch_checkpoint, weights_only=True)["model"]
    path = f"{usage['folders']['encoder']}/model.safetensors"
    with safe_open(path, "pt") as f:
        tensor_bytes = sum(f.get_tensor(k).nbytes for k in f.keys())
    assert os.path.getsize(path) < 1.01 * tensor_bytes + 100_000


def test_gradient_checkpointing_and_sdpa(usage):
    """Item 8: checkpointed gradients equal plain ones; sdpa is the default and eager
    attention gives the same outputs."""
    impl = usage["implementation"]
    assert impl["supports_gc"] and impl["gc_on"] and impl["n_grads"] > 10 and impl["grad_diff"] < 1e-5
    assert impl["supports_sdpa"] and impl["default_attn"] == "sdpa" and impl["eager_attn"] == "eager"
    assert impl["eager_diff"] < 1e-4

