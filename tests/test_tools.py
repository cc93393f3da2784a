"""The loading API and the command-line tools."""

import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import BIN, DEMO, ROOT
import mae_ast
from mae_ast.inference import CheckpointError


def test_load_gives_eval_model_matching_fairseq_loader(frame_checkpoint):
    from fairseq import checkpoint_utils

    model = mae_ast.load(str(frame_checkpoint), device="cpu")
    assert not model.training and model.encoder.layerdrop == 0
    ref = checkpoint_utils.load_model_ensemble_and_task([str(frame_checkpoint)])[0][0].eval()
    x = torch.randn(2, 300, 128)
    with torch.no_grad():
        assert torch.allclose(model(x, mask=False)["x"], ref(x, mask=False)["x"], atol=1e-6)


def test_load_without_fairseq_installed(frame_checkpoint):
    """In a process where importing fairseq fails, loading and extraction still work."""
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "fairseq" or name.startswith("fairseq."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import torch, mae_ast
assert not mae_ast.HAVE_FAIRSEQ and "fairseq" not in sys.modules
model = mae_ast.load({str(frame_checkpoint)!r}, device="cpu")
out = model.extract_layers([torch.randn(16000) * 0.1])
print(tuple(out["last_hidden_state"].shape), len(out["hidden_states"]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("(1, 49, 768) 2")


def test_not_a_checkpoint_names_the_problem(tmp_path):
    torch.save({"cfg": {}, "model": {"weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"not a MAE-AST checkpoint: its model lacks \['post_extract_proj"):
        mae_ast.load(str(tmp_path / "other.pt"))
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="expected keys 'cfg' and 'model'"):
        mae_ast.load(str(tmp_path / "tensor.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        mae_ast.load(str(tmp_path / "junk.pt"))


def test_manifest_tool_writes_original_format(tmp_path):
    audio = tmp_path / "audio"
    shutil.copytree(DEMO / "audio", audio)
    (audio / "broken.flac").write_bytes(b"nope" * 10)
    out = tmp_path / "manifests"
    proc = subprocess.run([str(BIN / "mae-ast-manifest"), str(audio), "--out", str(out),
                           "--valid-percent", "0.2", "--test-percent", "0.1", "--seed", "3"],
                          capture_output=True, text=True)
    assert proc.returncode == 1  # one unreadable file
    assert "broken.flac" in proc.stderr and "41 files found" in proc.stdout
    rows = {}
    for split in ("train", "valid", "test"):
        lines = (out / f"{split}.tsv").read_text().splitlines()
        assert lines[0] == str(audio)
        rows[split] = [line.split("\t") for line in lines[1:]]
    assert [len(r) for r in rows.values()] == [28, 8, 4]
    reference = {}
    for split in ("train", "valid", "test"):
        for line in (DEMO / f"{split}.tsv").read_text().splitlines()[1:]:
            name, size = line.split("\t")
            reference[name] = size
    assert all(reference[name] == size for r in rows.values() for name, size in r)
    # The same seed gives the same split.
    again = tmp_path / "again"
    subprocess.run([str(BIN / "mae-ast-manifest"), str(audio), "--out", str(again), "--valid-percent", "0.2",
                    "--test-percent", "0.1", "--seed", "3"], capture_output=True)
    assert (again / "valid.tsv").read_text() == (out / "valid.tsv").read_text()


def test_extract_cli_writes_features_and_reports_bad_files(tmp_path, frame_checkpoint):
    audio = tmp_path / "in"
    (audio / "sub").mkdir(parents=True)
    shutil.copy(DEMO / "audio" / "speech_00.flac", audio / "a.flac")
    shutil.copy(DEMO / "audio" / "env_06.mkv", audio / "sub" / "b.mkv")
    (audio / "bad.wav").write_bytes(b"RIFF" + os.urandom(100))
    out = tmp_path / "feats"
    proc = subprocess.run([str(BIN / "mae-ast-extract"), str(frame_checkpoint), str(audio), "--out", str(out),
                           "--layer", "1", "--batch-size", "2", "--device", "cpu"], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "bad.wav" in proc.stderr and "wrote 2 feature files (layer 1 of 2" in proc.stdout
    a = np.load(out / "a.npy")
    b = np.load(out / "sub" / "b.npy")
    model = mae_ast.load(str(frame_checkpoint), device="cpu")
    from mae_ast.data import read_audio

    with torch.no_grad():
        ref = model.extract_layers([read_audio(str(audio / "a.flac"))])["hidden_states"][0][0]
    assert a.shape == tuple(ref.shape) and np.allclose(a, ref.numpy(), atol=1e-4)
    with torch.no_grad():  # stopping at layer 1 gives the same layer-1 states
        early = model.extract_layers([read_audio(str(audio / "a.flac"))], output_layer=1)["hidden_states"]
    assert len(early) == 1 and torch.allclose(early[0][0], ref, atol=1e-6)
    assert b.ndim == 2 and b.shape[1] == 768


@pytest.mark.parametrize("which", ["frame_checkpoint", "patch_checkpoint"])
def test_show_cli_writes_a_png(request, tmp_path, which):
    ckpt = request.getfixturevalue(which)
    png = tmp_path / "fig.png"
    proc = subprocess.run([str(BIN / "mae-ast-show"), str(ckpt), str(DEMO / "audio" / "speech_02.flac"),
                           "--out", str(png)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1000, 900)
    assert "masked" in proc.stdout
