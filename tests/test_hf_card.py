"""Issue 22 item 10: the export writes a model card (README.md with transformers' metadata
header, the license left for the user): architecture, features, what the checkpoint
records of its training (data folder, manifests, updates, provenance when stored), the
numbers of ``mae-ast-evaluate --json`` files passed with ``--eval``, and how to load it
offline; and the card's loading snippet runs as written in the clean venv."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import torch

from conftest import BIN, run_cli
from test_hf_export import clean_python, run_clean

pytest.importorskip("safetensors", reason="the hf extra is not installed (pip install -e '.[hf]')")


def cli(tool: str, *args: str) -> subprocess.CompletedProcess:
    return run_cli(BIN / tool, *args, timeout=300, check=True)


def test_the_card_says_what_the_checkpoint_holds(finetuned_checkpoint, tmp_path):
    state = torch.load(finetuned_checkpoint, weights_only=True)
    data = state["cfg"]["task"]["data"]
    cli("mae-ast-evaluate", str(finetuned_checkpoint), data, "--split", "valid", "--json",
        str(tmp_path / "valid.json"), "--device", "cpu")
    metrics = json.loads((tmp_path / "valid.json").read_text())
    cli("mae-ast-export-hf", str(finetuned_checkpoint), str(tmp_path / "clf"), "--eval",
        str(tmp_path / "valid.json"))
    card = (tmp_path / "clf" / "README.md").read_text()

    header = card.split("---\n")[1]
    assert "library_name: transformers" in header and "pipeline_tag: audio-classification" in header
    assert re.search(r"^license:", header, re.M)
    config = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert f"{config['encoder_layers']}-layer transformer encoder, width {config['encoder_embed_dim']}" in card
    assert "16x16 patches" in card and "128 mel bins" in card and f"{config['target_length']} frames" in card
    assert all(name in card for name in config["id2label"].values())
    assert f"data folder: {data}" in card and "train.tsv" in card and "valid.tsv" in card
    assert f"updates: {state['optimizer_history'][-1]['num_updates']}" in card
    assert "valid.json` (split `valid`, crop start)" in card and f"accuracy {metrics['accuracy']:.4g}" in card
    # valid is the split the run selected its checkpoint on: the card says so beside the number.
    assert metrics["selected_on_scored_clips"] and "selected on these clips" in card
    assert "trust_remote_code=True" in card

    # An evaluation of another checkpoint, or a file mae-ast-evaluate did not write, is refused
    # (the card would publish another model's number); nothing is exported.
    other = dict(state, extra_state={**(state.get("extra_state") or {}), "note": "another save"})
    torch.save(other, tmp_path / "other.pt")
    (tmp_path / "probe.json").write_text(json.dumps({"checkpoint": str(finetuned_checkpoint), "layer": 2, "C": 100}))
    for ckpt, result, says in ((tmp_path / "other.pt", "valid.json", "evaluate the checkpoint you export"),
                               (finetuned_checkpoint, "probe.json", "not a mae-ast-evaluate --json file")):
        out = run_cli(BIN / "mae-ast-export-hf", str(ckpt), str(tmp_path / "refused"), "--eval",
                      str(tmp_path / result), timeout=300)
        assert out.returncode == 1 and says in out.stderr and str(tmp_path / result) in out.stderr, out.stderr
        assert not (tmp_path / "refused" / "config.json").exists()

    # The provenance record the fine-tuning run stored: each split with its clip count.
    from mae_ast.provenance import describe

    summary = describe(state)
    assert summary["status"] == "recorded"
    for name, split in summary["splits"].items():
        assert f"split `{name}`: {split['n_clips']} clips from `{split['manifest']}`" in card
    # A checkpoint without a record (released ones) says so.
    del state["task_state"]
    torch.save(state, tmp_path / "no_record.pt")
    cli("mae-ast-export-hf", str(tmp_path / "no_record.pt"), str(tmp_path / "bare"))
    card = (tmp_path / "bare" / "README.md").read_text()
    assert "No provenance record" in card and "## Evaluation" not in card


def test_the_cards_loading_snippet_runs_offline(patch_checkpoint, tmp_path):
    cli("mae-ast-export-hf", str(patch_checkpoint), str(tmp_path / "enc"))
    card = (tmp_path / "enc" / "README.md").read_text()
    assert "pipeline_tag: feature-extraction" in card and "AutoModelForAudioClassification" in card
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace('"PATH"', repr(str(tmp_path / "enc")))
    driver = ("import json, sys\nimport numpy as np\nwav = np.random.default_rng(0).standard_normal(16000)"
              ".astype(np.float32) * 0.1\n" + code
              + "\nprint('REPORT ' + json.dumps({'rows': out.attention_mask.sum(1).tolist(), "
                "'finite': bool(np.isfinite(out.last_hidden_state.detach().numpy()).all())}))\n")
    report, _ = run_clean(clean_python(), driver, {}, tmp_path)
    assert report["finite"] and report["rows"] == [6]


def test_an_unwritable_out_dir_is_refused_before_the_checkpoint_is_read(tmp_path, capsys):
    """Only a file was refused: an unwritable OUT_DIR was an OSError traceback after the
    checkpoint was loaded. Now exit 2 first, as the other tools' outputs."""
    from mae_ast.tools import export_hf

    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"never read")
    with pytest.raises(SystemExit) as exit_:
        export_hf.main([str(checkpoint), str(checkpoint / "hf")])
    assert exit_.value.code == 2
    assert f"OUT_DIR {checkpoint / 'hf'}: {checkpoint} is a file, so no folder" in capsys.readouterr().err
