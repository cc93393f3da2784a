"""The remote-code files of an exported folder: ``mae_ast/hf``'s three transformers files,
shipped as they are.

An exported folder must load with only torch, transformers and safetensors installed, so
its code cannot import ``mae_ast``. ``configuration.py``, ``modeling.py`` and
``feature_extraction.py`` are written for that: self-contained, importing only the
packages in ``ALLOWED_IMPORTS`` and each other, and holding the encoder, the
classification head and the feature extractor only (the package's training code, the
decoder and the data pipeline stay behind). They are kept from drifting in two ways, as
transformers keeps its own model files:
- a block marked ``# Copied from mae_ast.<module>.<name>`` must be the package's
  definition verbatim (``check_copies``; the export refuses otherwise, naming the block);
- the numbers: tests run the exported folder against ``extract_layers`` and
  ``load_classifier(...).scores`` (``tests/test_hf_export.py``).
Exporting renames the files transformers' way (``modeling_mae_ast.py``, ...) and their
imports of each other with them.

Why hand-kept rather than generated: the package's encoder lives inside the pretraining
class (``MAE_AST``: decoder, masking, fairseq registration), so a generator that copies
what the transformers classes reach copies all of it (~2,100 lines); the files here are
the ~700 lines a transformers reader expects, and what they share with the package
verbatim is checked.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

HF_DIR = Path(__file__).resolve().parent
# Exported file -> the package file it is.
FILES = {
    "configuration_mae_ast.py": "configuration.py",
    "feature_extraction_mae_ast.py": "feature_extraction.py",
    "modeling_mae_ast.py": "modeling.py",
}
# What an exported file may import: the standard library modules used, and the three packages.
ALLOWED_IMPORTS = {"__future__", "dataclasses", "functools", "math", "typing", "numpy", "torch", "transformers"}
COPIED_FROM = re.compile(r"^# Copied from (mae_ast(?:\.\w+)+)\.(\w+)$")


class ExportError(RuntimeError):
    """The package's code cannot be exported as it is; the message names the definition."""


def generate(filename: str) -> str:
    """The text of one exported file (a key of ``FILES``): the package file, its imports of
    its siblings renamed. Refuses an import an exported folder could not satisfy."""
    path = HF_DIR / FILES[filename]
    text = path.read_text()
    for exported, own in FILES.items():
        text = text.replace(f"from .{own[:-3]} import", f"from .{exported[:-3]} import")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.level:
            if f"{node.module}.py" not in FILES:
                raise ExportError(f"{path}:{node.lineno} imports .{node.module}, which an exported folder lacks")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            top = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
            if top not in ALLOWED_IMPORTS:
                raise ExportError(f"{path}:{node.lineno} imports {top}, which an exported folder cannot rely on "
                                  f"(allowed: {sorted(ALLOWED_IMPORTS)})")
    return text


def _definitions(source: str) -> dict[str, tuple[int, str]]:
    """Top-level name -> (first line, source text with decorators) of a module's source."""
    lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body:
        names = ([node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else
                 [t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign) else [])
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        for name in names:
            out[name] = (start, "\n".join(lines[start - 1: node.end_lineno]))
    return out


def check_copies(filename: str) -> list[str]:
    """The blocks of a package hf file marked ``# Copied from mae_ast.X.Name`` that differ
    from ``Name`` in ``mae_ast.X`` (an empty list when all are verbatim)."""
    path = HF_DIR / filename
    source = path.read_text()
    lines = source.splitlines()
    problems = []
    for name, (start, text) in _definitions(source).items():
        m = COPIED_FROM.match(lines[start - 2]) if start > 1 else None
        if not m:
            continue
        module, original = m.group(1), m.group(2)
        theirs = _definitions(Path(importlib.util.find_spec(module).origin).read_text()).get(original)
        if theirs is None:
            problems.append(f"{path}:{start}: {module} has no top-level {original}")
        elif theirs[1] != text:
            problems.append(f"{path}:{start}: {name} is no longer a copy of {module}.{original}: copy it again")
    return problems


def write(folder: Path) -> list[str]:
    """Write the exported files into ``folder`` (after checking the copies); their names."""
    problems = [p for own in FILES.values() for p in check_copies(own)]
    if problems:
        raise ExportError("; ".join(problems))
    for filename in FILES:
        (folder / filename).write_text(generate(filename))
    return list(FILES)
