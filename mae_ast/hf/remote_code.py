"""The remote-code files of an exported folder: package modules shipped verbatim.

An exported folder must load with only torch, transformers and safetensors installed, so it
carries ``mae_ast/hf``'s transformers files and the torch-only package modules they import,
renamed transformers' way (``modeling_mae_ast.py``, ...), their relative imports rewritten to
the flat ``from .x_mae_ast import`` transformers' loader follows. Any other import refuses the
export, naming the file and line.

The transformer block is the package's own (``models/encoder_layer.py``); the stack and the
models around it are transformers' files because the package's live inside the pretraining
class (decoder, masking, fairseq registration). ``tests/test_hf_export.py`` checks their
numbers against ``extract_layers`` and ``load_classifier(...).scores``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Exported file -> the package module it is (a path under mae_ast/).
FILES = {
    "configuration_mae_ast.py": "hf/configuration.py",
    "encoder_fields_mae_ast.py": "hf/encoder_fields.py",
    "feature_extraction_mae_ast.py": "hf/feature_extraction.py",
    "modeling_mae_ast.py": "hf/modeling.py",
    "class_scores_mae_ast.py": "models/class_scores.py",
    "encoder_input_mae_ast.py": "models/encoder_input.py",
    "encoder_layer_mae_ast.py": "models/encoder_layer.py",
    "fbank_mae_ast.py": "data/fbank.py",
    "head_norm_mae_ast.py": "models/head_norm.py",
    "patch_grid_mae_ast.py": "models/patch_grid.py",
    "positions_mae_ast.py": "models/positions.py",
}
# What a shipped file may import besides the others: the standard library and the three packages.
ALLOWED_IMPORTS = set(sys.stdlib_module_names) | {"numpy", "torch", "transformers"}


class ExportError(RuntimeError):
    """The package's code cannot be exported as it is; the message names the file and line."""


def generate(filename: str) -> str:
    """The text of one exported file (a key of ``FILES``), or an ExportError."""
    own = FILES[filename]
    path = PACKAGE_DIR / own
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    exported = {mod[:-3].replace("/", "."): name[:-3] for name, mod in FILES.items()}
    package = own.split("/")[:-1]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            if target not in exported:
                raise ExportError(f"{path}:{node.lineno} imports {'.' * node.level}{node.module or ''}, "
                                  "which an exported folder lacks")
            line, at = lines[node.lineno - 1], node.col_offset
            head = f"from {'.' * node.level}{node.module or ''} import"
            if not line[at:].startswith(head):
                raise ExportError(f"{path}:{node.lineno}: write the import as '{head} ...' on one line")
            lines[node.lineno - 1] = line[:at] + f"from .{exported[target]} import" + line[at + len(head):]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for top in (name.split(".")[0] for name in names):
                if top not in ALLOWED_IMPORTS:
                    raise ExportError(f"{path}:{node.lineno} imports {top}, which an exported folder cannot rely "
                                      "on (allowed: the standard library, numpy, torch, transformers)")
    return "".join(lines)


def write(folder: Path) -> None:
    """Write the exported files into ``folder``, all checked before any is written."""
    texts = {name: generate(name) for name in FILES}
    for name, text in texts.items():
        (folder / name).write_text(text)
