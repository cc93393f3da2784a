"""Issue 22 item 9: the exported code is what a transformers reader expects (an encoder,
a classification head and a feature extractor: one configuration, one modeling and one
feature-extraction file, <= 950 lines with the package modules they import), and
self-contained: package modules shipped verbatim, importing only each other and what
remote_code allows (issue 24: no hand-kept copies; the numbers are checked against the
package in tests/test_hf_export.py)."""

from __future__ import annotations

import ast

import pytest

from mae_ast.hf import remote_code

pytest.importorskip("safetensors", reason="the hf extra is not installed (pip install -e '.[hf]')")

def test_exported_code_is_small_self_contained_files():
    texts = {name: remote_code.generate(name) for name in remote_code.FILES}
    assert sorted(texts) == ["class_scores_mae_ast.py", "configuration_mae_ast.py", "encoder_fields_mae_ast.py",
                             "encoder_input_mae_ast.py",
                             "encoder_layer_mae_ast.py",
                             "fbank_mae_ast.py",
                             "feature_extraction_mae_ast.py",
                             "head_norm_mae_ast.py", "modeling_mae_ast.py", "patch_grid_mae_ast.py",
                             "positions_mae_ast.py"]
    # 975, was 900: the encoder's input steps (encoder_input.py, add_positions, time_align,
    # mean_over_valid) are shipped once for both models instead of kept twice, and the
    # classifier's loss is the criterion's (class_scores.py) instead of a second formula.
    assert sum(len(t.splitlines()) for t in texts.values()) <= 975
    defined = set()
    for name, text in texts.items():
        tree = ast.parse(text)
        defined |= {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:  # only each other, flat
                assert node.level == 1 and f"{node.module}.py" in remote_code.FILES, (name, node.module)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                top = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
                assert top in remote_code.ALLOWED_IMPORTS and top != "mae_ast", (name, top)
    # Nothing of pretraining or the data pipeline comes along.
    assert {"MAEASTConfig", "MAEASTModel", "MAEASTForAudioClassification", "MAEASTFeatureExtractor",
            "fbank", "with_deltas", "build_head_norm", "sinusoid_table", "PatchGrid",
            "TransformerSentenceEncoderLayer"} <= defined
    for absent in ("MAE_AST", "compute_mask", "spec_augment", "resample", "TransformerEncoder", "decoder"):
        assert absent not in defined
    assert "decoder" not in texts["modeling_mae_ast.py"]


def test_no_definition_is_kept_twice():
    """Each top-level function or class of the shipped files is defined in one of them only."""
    seen: dict[str, str] = {}
    for own in remote_code.FILES.values():
        for node in ast.parse((remote_code.PACKAGE_DIR / own).read_text()).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                assert node.name not in seen, (node.name, own, seen.get(node.name))
                seen[node.name] = own


def _fake_package(tmp_path, monkeypatch, own: str, edit):
    for mod in remote_code.FILES.values():
        (tmp_path / mod).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / mod).write_text((remote_code.PACKAGE_DIR / mod).read_text())
    (tmp_path / own).write_text(edit((tmp_path / own).read_text()))
    monkeypatch.setattr(remote_code, "PACKAGE_DIR", tmp_path)


def test_an_import_the_folder_cannot_satisfy_fails_the_export(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, "hf/modeling.py",
                  lambda t: t.replace("import torch\n", "import torch\nfrom ..models import builders\n", 1))
    with pytest.raises(remote_code.ExportError, match=r"modeling.py:\d+ imports \.\.models, which an exported "
                                                      "folder lacks"):
        remote_code.write(tmp_path)
    assert not (tmp_path / "modeling_mae_ast.py").exists()


def test_a_shipped_package_module_that_imports_the_package_fails_the_export(tmp_path, monkeypatch):
    """A torch-only module the folder ships must stay torch-only: fbank.py importing the
    data pipeline (absolutely or relatively) is refused, naming the file and line."""
    _fake_package(tmp_path, monkeypatch, "data/fbank.py",
                  lambda t: t.replace("import torch\n", "import torch\nfrom mae_ast.data import resample\n", 1))
    with pytest.raises(remote_code.ExportError, match=r"fbank.py:\d+ imports mae_ast, which an exported folder "
                                                      "cannot rely on"):
        remote_code.generate("fbank_mae_ast.py")
    _fake_package(tmp_path, monkeypatch, "data/fbank.py",
                  lambda t: t.replace("import torch\n", "import torch\nfrom .resample import resample\n", 1))
    with pytest.raises(remote_code.ExportError, match=r"fbank.py:\d+ imports \.resample, which an exported "
                                                      "folder lacks"):
        remote_code.generate("fbank_mae_ast.py")


def test_every_module_of_an_import_line_is_checked(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, "data/fbank.py",
                  lambda t: t.replace("import torch\n", "import math, fairseq\nimport torch\n", 1))
    with pytest.raises(remote_code.ExportError, match=r"fbank.py:\d+ imports fairseq, which an exported folder "):
        remote_code.generate("fbank_mae_ast.py")  # not only the line's first module


def test_the_config_fields_are_the_package_encoder_fields():
    """encoder_fields.ENCODER_DEFAULTS (what config.json carries and MAEASTConfig reads)
    are MAE_AST_Config fields, with its defaults."""
    import dataclasses

    from mae_ast.hf.encoder_fields import ENCODER_DEFAULTS
    from mae_ast.models.mae_ast import MAE_AST_Config

    package = {f.name: f.default for f in dataclasses.fields(MAE_AST_Config)}
    assert ENCODER_DEFAULTS == {k: package[k] for k in ENCODER_DEFAULTS}
