"""Issue 22 item 9: the exported code is what a transformers reader expects (an encoder,
a classification head and a feature extractor: one configuration, one modeling and one
feature-extraction file, <= 900 lines together), self-contained, and what it shares with
the package is checked (``# Copied from`` blocks verbatim; the numbers are checked
against the package in tests/test_hf_export.py)."""

from __future__ import annotations

import ast

import pytest

from conftest import ROOT
from mae_ast.hf import remote_code

pytest.importorskip("safetensors", reason="the hf extra is not installed (pip install -e '.[hf]')")

HF = ROOT / "mae_ast" / "hf"


def test_exported_code_is_three_small_self_contained_files():
    texts = {name: remote_code.generate(name) for name in remote_code.FILES}
    assert sorted(texts) == ["configuration_mae_ast.py", "feature_extraction_mae_ast.py", "modeling_mae_ast.py"]
    assert sum(len(t.splitlines()) for t in texts.values()) <= 900
    defined = set()
    for name, text in texts.items():
        tree = ast.parse(text)
        defined |= {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:  # only each other
                assert f"{node.module}.py" in remote_code.FILES, (name, node.module)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                top = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
                assert top in remote_code.ALLOWED_IMPORTS, (name, top)
    # Nothing of pretraining or the data pipeline comes along.
    assert {"MAEASTConfig", "MAEASTModel", "MAEASTForAudioClassification", "MAEASTFeatureExtractor"} <= defined
    for absent in ("MAE_AST", "compute_mask", "spec_augment", "resample", "TransformerEncoder", "decoder"):
        assert absent not in defined
    assert "decoder" not in texts["modeling_mae_ast.py"]


def test_copied_blocks_are_the_package_definitions_verbatim():
    marked = [line for own in remote_code.FILES.values() for line in (HF / own).read_text().splitlines()
              if line.startswith("# Copied from")]
    assert len(marked) >= 8  # the fbank (6 blocks), deltas, the head's BatchNorm and its builder
    for own in remote_code.FILES.values():
        assert remote_code.check_copies(own) == [], own


def test_a_copy_that_drifted_fails_the_export(tmp_path, monkeypatch):
    """Edit a copied block (or the original) and the export refuses, naming the block."""
    fake = tmp_path / "hf"
    fake.mkdir()
    for own in remote_code.FILES.values():
        (fake / own).write_text((HF / own).read_text())
    text = (fake / "feature_extraction.py").read_text()
    (fake / "feature_extraction.py").write_text(text.replace("1127.0 * math.log(1.0 + freq / 700.0)",
                                                             "1127.0 * math.log1p(freq / 700.0)"))
    monkeypatch.setattr(remote_code, "HF_DIR", fake)
    with pytest.raises(remote_code.ExportError, match="mel_scale is no longer a copy of mae_ast.data.fbank.mel_scale"):
        remote_code.write(tmp_path)
    assert not (tmp_path / "modeling_mae_ast.py").exists()


def test_an_import_the_folder_cannot_satisfy_fails_the_export(tmp_path, monkeypatch):
    fake = tmp_path / "hf"
    fake.mkdir()
    for own in remote_code.FILES.values():
        (fake / own).write_text((HF / own).read_text())
    text = (fake / "modeling.py").read_text()
    (fake / "modeling.py").write_text(text.replace("import torch\n", "import torch\nfrom ..models import builders\n", 1))
    monkeypatch.setattr(remote_code, "HF_DIR", fake)
    with pytest.raises(remote_code.ExportError, match=r"modeling.py:\d+ imports .models, which an exported folder lacks"):
        remote_code.generate("modeling_mae_ast.py")


def test_the_config_fields_are_the_package_encoder_fields():
    """configuration.py's ENCODER_DEFAULTS (self-contained) = folder.EXPORTED_FIELDS, with
    MAE_AST_Config's defaults."""
    import dataclasses

    from mae_ast.hf.folder import EXPORTED_FIELDS
    from mae_ast.models.mae_ast import MAE_AST_Config

    tree = ast.parse((HF / "configuration.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "ENCODER_DEFAULTS")
    defaults = ast.literal_eval(node.value)
    assert list(defaults) == list(EXPORTED_FIELDS)
    package = {f.name: f.default for f in dataclasses.fields(MAE_AST_Config)}
    assert defaults == {k: package[k] for k in defaults}
