"""README's "HEAR and Hugging Face" snippets, taken from the README text and run as
written: only the checkpoint placeholders are filled in (and wav1, wav2 defined)."""

import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

import mae_ast
from conftest import DEMO, ROOT
from mae_ast.data import read_audio

README = (ROOT / "README.md").read_text()
BIN = os.path.dirname(sys.executable)


def blocks() -> list[tuple[str, str]]:
    m = re.search(r"\n## HEAR and Hugging Face\n(.*?)\n## ", README, re.S)
    assert m, "README.md: no '## HEAR and Hugging Face' section"
    found = re.findall(r"```(\w+)\n(.*?)```", m.group(1), re.S)
    assert [lang for lang, _ in found] == ["python", "bash", "python", "python"], [lang for lang, _ in found]
    return found


def run_python(code: str, cwd, **env) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1",
                                   **env))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


def test_hear_snippet_runs_as_written(patch_checkpoint, tmp_path):
    code = blocks()[0][1]
    assert '"checkpoint_last.pt"' in code
    code = code.replace('"checkpoint_last.pt"', repr(str(patch_checkpoint)))
    report = ("\nimport json\nprint('RESULT ' + json.dumps({'emb': list(embeddings.shape), "
              "'ts': timestamps[0].tolist(), 'scene': list(scene.shape), 'dtype': str(scene.dtype)}))")
    result = run_python(code + report, tmp_path)
    dim = mae_ast.load(str(patch_checkpoint), device="cpu").cfg.encoder_embed_dim
    assert result["emb"] == [2, 50, dim] and result["scene"] == [2, dim] and result["dtype"] == "torch.float32"
    assert result["ts"][0] == 7.5 and result["ts"][-1] == 1967.5  # every 40 ms over the 2 s clips


def test_hugging_face_snippets_run_as_written(patch_checkpoint, finetuned_checkpoint, tmp_path):
    pytest.importorskip("transformers", reason="the hf extra is not installed (pip install -e '.[hf]')")
    _, bash, encoder, classify = (code for _, code in blocks())
    # The console script, or (in a venv installed before it existed) the same module.
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "mae-ast-export-hf").write_text(f'#!/bin/sh\nexec {sys.executable} -m mae_ast.tools.export_hf "$@"\n')
    (shim / "mae-ast-export-hf").chmod(stat.S_IRWXU)
    first = BIN if os.path.exists(f"{BIN}/mae-ast-export-hf") else f"{shim}:{BIN}"
    path = f"{first}:{os.environ['PATH']}"
    for placeholder in ("checkpoint_last.pt", "checkpoint_best.pt"):
        assert placeholder in bash
    bash = bash.replace("checkpoint_last.pt", str(patch_checkpoint)).replace("checkpoint_best.pt",
                                                                            str(finetuned_checkpoint))
    proc = subprocess.run(["bash", "-euc", bash], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=dict(os.environ, PATH=path, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr[-3000:]

    wavs = [read_audio(str(DEMO / "audio" / n), 16000)[:32000].numpy() for n in ("speech_00.flac", "env_00.flac")]
    np.save(tmp_path / "wavs.npy", np.stack(wavs))
    prelude = "import numpy as np\nwav1, wav2 = np.load('wavs.npy')\n"
    report = ("\nimport json\nprint('RESULT ' + json.dumps({'last': out.last_hidden_state[0].tolist(), "
              "'layers': len(out.hidden_states), 'rows': out.attention_mask.sum(1).tolist()}))")
    result = run_python(prelude + encoder + "\n" + classify + report, tmp_path, HF_HUB_OFFLINE="1")
    ref = mae_ast.load(str(patch_checkpoint), device="cpu").extract_layers([torch.from_numpy(wavs[0])])
    assert result["layers"] == len(ref["hidden_states"])
    assert torch.allclose(torch.tensor(result["last"]), ref["last_hidden_state"][0], atol=1e-4)
