"""The remote-code files of an exported folder, generated from the package's own sources.

An exported folder must load with only torch, transformers and safetensors installed,
so it cannot import ``mae_ast``; and a second, hand-kept copy of the model would drift.
So at export time each file is assembled from the package's modules: starting from the
transformers classes in ``mae_ast/hf/*.py``, every top-level definition they reach (by
name, across the package's relative imports) is copied with its source text, in module
order, and the package imports between them are dropped. What the copy may import is
checked: a definition that reaches fairseq, soundfile or any package outside
``ALLOWED_IMPORTS`` is an error naming it, so a later edit that would break exported
folders fails the export (and its test) instead of the user's load.

Two rules keep training-only code out:
- a module-level ``try: <import> except ImportError: <fallback>`` contributes its
  fallback (``mae_ast/_fairseq.py``'s stand-ins for fairseq's classes);
- the methods in ``OMIT`` (fairseq's ``build_model``, the pretraining masks) become
  stubs that raise, since they reach fairseq.
"""

from __future__ import annotations

import ast
import importlib.util
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "mae_ast"
PACKAGE_DIR = Path(__file__).resolve().parents[1]

# Exported file -> (package module, the classes it must define).
FILES = {
    "configuration_mae_ast.py": ("mae_ast.hf.configuration", ["MAEASTConfig"]),
    "feature_extraction_mae_ast.py": ("mae_ast.hf.feature_extraction", ["MAEASTFeatureExtractor"]),
    "modeling_mae_ast.py": ("mae_ast.hf.modeling", ["MAEASTModel", "MAEASTForAudioClassification"]),
}
# What an exported folder may import: the standard library modules used, and the three packages.
ALLOWED_IMPORTS = {"__future__", "collections", "dataclasses", "functools", "logging", "math", "types", "typing",
                   "warnings", "numpy", "torch", "transformers", "safetensors"}
# Methods that only training calls and that reach fairseq: stubs in the exported code.
OMIT = {"MAE_AST.build_model", "MAE_AST.forward_mask", "MAE_AST_Classifier.build_model"}


class ExportError(RuntimeError):
    """The package's code cannot be exported as it is; the message names the definition."""


@dataclass
class Module:
    name: str  # dotted
    path: Path
    source: str
    defs: dict[str, ast.stmt] = field(default_factory=dict)  # top-level name -> defining statement
    package_imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (module, name)
    external_imports: dict[str, str] = field(default_factory=dict)  # name -> import statement


def module_path(name: str) -> Path:
    parts = name.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def parse_module(name: str) -> Module:
    path = module_path(name)
    source = path.read_text()
    mod = Module(name, path, source)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    body = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Try):  # optional dependency: its ImportError fallback
            body += [stmt for handler in node.handlers for stmt in handler.body]
        else:
            body.append(node)
    for node in body:
        if isinstance(node, ast.ImportFrom) and node.level:
            target = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            for alias in node.names:
                mod.package_imports[alias.asname or alias.name] = (target, alias.name)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                text = f"from {node.module} import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                mod.external_imports[alias.asname or alias.name] = text
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    mod.external_imports[alias.asname] = f"import {alias.name} as {alias.asname}"
                else:
                    mod.external_imports[alias.name.split(".")[0]] = f"import {alias.name}"
        else:
            for n in defined_names(node):
                mod.defs[n] = node
    return mod


def omitted(cls: ast.ClassDef) -> list[ast.FunctionDef]:
    return [n for n in cls.body if isinstance(n, ast.FunctionDef) and f"{cls.name}.{n.name}" in OMIT]


def referenced_names(node: ast.stmt) -> set[str]:
    skip = set(map(id, omitted(node))) if isinstance(node, ast.ClassDef) else set()
    names: set[str] = set()
    todo = [node]
    while todo:
        n = todo.pop()
        if id(n) in skip:
            names |= {d.id for d in n.decorator_list if isinstance(d, ast.Name)}
            continue
        if isinstance(n, ast.Name):
            names.add(n.id)
        todo.extend(ast.iter_child_nodes(n))
    return names


def source_of(mod: Module, node: ast.stmt) -> str:
    """The statement's text with its decorators and the comment lines right above it;
    omitted methods replaced by stubs."""
    lines = mod.source.splitlines()
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
    while start > 0 and lines[start - 1].strip().startswith("#"):
        start -= 1
    end = node.end_lineno
    if isinstance(node, ast.ClassDef):
        cut = []
        for method in omitted(node):
            first = min([method.lineno] + [d.lineno for d in method.decorator_list]) - 1
            indent = " " * method.col_offset
            decorators = [lines[d.lineno - 1] for d in method.decorator_list]
            stub = [*decorators, f"{indent}def {method.name}({method.args.args[0].arg}, *args, **kwargs):",
                    f'{indent}    raise NotImplementedError("{node.name}.{method.name} is for training: '
                    f'it needs the mae_ast package (and fairseq), not this exported copy")']
            cut.append((first, method.end_lineno, stub))
        out, pos = [], start
        for first, last, stub in sorted(cut):
            out += lines[pos:first] + stub
            pos = last
        out += lines[pos:end]
    else:
        out = lines[start:end]
    return textwrap.dedent("\n".join(out))


def generate(filename: str) -> str:
    """The text of one remote-code file (a key of ``FILES``)."""
    root_module, roots = FILES[filename]
    other_files = {m: f for f, (m, _) in FILES.items() if f != filename}
    modules: dict[str, Module] = {}
    chosen: dict[tuple[str, str], None] = {}  # (module, name), insertion-ordered
    externals: dict[str, str] = {}  # statement -> the definition that needs it
    cross: dict[str, set[str]] = {}  # sibling exported file -> names
    order: list[str] = []  # modules in dependency order (dependencies first)

    def get(name: str) -> Module:
        if name not in modules:
            modules[name] = parse_module(name)
        return modules[name]

    def visit(module: str, name: str, via: str) -> None:
        if module in other_files:
            cross.setdefault(other_files[module], set()).add(name)
            return
        mod = get(module)
        if (module, name) in chosen:
            return
        if name in mod.package_imports:
            visit(*mod.package_imports[name], via)
            return
        if name not in mod.defs:
            raise ExportError(f"{mod.path}: {name!r} (needed by {via}) is not defined at the top of the module")
        chosen[(module, name)] = None
        node = mod.defs[name]
        where = f"{module}.{name}"
        for ref in sorted(referenced_names(node) - {name}):
            if ref in mod.defs or ref in mod.package_imports:
                visit(module, ref, where)
            elif ref in mod.external_imports:
                externals.setdefault(mod.external_imports[ref], where)
        for sub in ast.walk(node):  # imports inside functions must be allowed too
            if _in_omitted(node, sub):
                continue
            if isinstance(sub, ast.ImportFrom) and sub.level:
                raise ExportError(f"{where} imports from the package inside a function "
                                  f"({mod.path}:{sub.lineno}); move it to the module top or add the method to OMIT")
            if isinstance(sub, (ast.Import, ast.ImportFrom)) and sub is not node:
                top = (sub.module if isinstance(sub, ast.ImportFrom) else sub.names[0].name).split(".")[0]
                if top not in ALLOWED_IMPORTS:
                    raise ExportError(f"{where} imports {top} ({mod.path}:{sub.lineno}), which an exported "
                                      f"folder cannot rely on (allowed: {sorted(ALLOWED_IMPORTS)})")
        if module not in order:
            order.append(module)

    for root in roots:
        visit(root_module, root, f"{filename}")
    for statement, where in externals.items():
        top = statement.split()[1].split(".")[0]
        if top not in ALLOWED_IMPORTS:
            raise ExportError(f"{where} needs `{statement}`, which an exported folder cannot rely on "
                              f"(allowed: {sorted(ALLOWED_IMPORTS)})")

    texts: dict[str, tuple[str, str]] = {}  # name -> (module, source): one definition per name
    blocks = []
    for module in _dependency_order(order, chosen, modules):
        mod = modules[module]
        names = sorted((n for m, n in chosen if m == module), key=lambda n: mod.defs[n].lineno)
        seen_nodes: set[int] = set()
        parts = []
        for n in names:
            node = mod.defs[n]
            if id(node) in seen_nodes:
                continue
            seen_nodes.add(id(node))
            text = source_of(mod, node)
            if n in texts and texts[n][1] != text:
                raise ExportError(f"{n!r} is defined differently in {texts[n][0]} and {module}: "
                                  "the exported file would have only one")
            if n in texts:
                continue
            texts[n] = (module, text)
            parts.append(text)
        if parts:
            rel = mod.path.relative_to(PACKAGE_DIR.parent)
            blocks.append(f"# ---- from {rel} " + "-" * max(0, 70 - len(str(rel))) + "\n\n" + "\n\n\n".join(parts))

    imports = sorted(s for s in externals if not s.startswith("from __future__"))
    header = [f'"""{filename}: generated by mae-ast-export-hf from the mae_ast package\'s own modules',
              "(mae_ast/hf/remote_code.py); do not edit, export again instead."]
    header += ['"""', "", "from __future__ import annotations", "", *imports]
    for sibling, names in sorted(cross.items()):
        header.append(f"from .{sibling[:-3]} import {', '.join(sorted(names))}")
    return "\n".join(header) + "\n\n\n" + "\n\n\n".join(blocks) + "\n"


def _in_omitted(node: ast.stmt, sub: ast.AST) -> bool:
    if not isinstance(node, ast.ClassDef):
        return False
    return any(sub is n for method in omitted(node) for n in ast.walk(method))


def _dependency_order(order: list[str], chosen: dict, modules: dict[str, Module]) -> list[str]:
    """Modules whose chosen definitions others use come first (at import time a class
    base or decorator must exist already)."""
    deps: dict[str, set[str]] = {m: set() for m in order}
    for module, name in chosen:
        mod = modules[module]
        for ref in referenced_names(mod.defs[name]):
            if ref in mod.package_imports:
                target = mod.package_imports[ref][0]
                while target in modules and ref in modules[target].package_imports:  # re-exports
                    target, ref = modules[target].package_imports[ref]
                if target in deps and target != module:
                    deps[module].add(target)
    out: list[str] = []

    def place(m: str, stack: tuple = ()) -> None:
        if m in out or m in stack:
            return
        for d in sorted(deps[m]):
            place(d, stack + (m,))
        out.append(m)

    for m in order:
        place(m)
    return out


def write(folder: Path) -> list[str]:
    """Write every remote-code file into ``folder``; their names."""
    for filename in FILES:
        (folder / filename).write_text(generate(filename))
    return list(FILES)
