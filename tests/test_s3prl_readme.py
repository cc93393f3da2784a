"""s3prl/README.md's install line and Python snippet, taken from the README text and run
as written: only the placeholders are filled in.

The snippet runs in a fresh interpreter whose working directory is the repo's s3prl/
folder, with s3prl/ first on sys.path as the snippet puts it: the setting in which the
upstream folder, when it was still called s3prl/mae_ast, shadowed this project's
``mae_ast`` package (``module 'mae_ast' has no attribute 'load'``)."""

import json
import re
import shlex
import subprocess
import sys

import torch

from conftest import ROOT

S3PRL_DIR = ROOT / "s3prl"
README = (S3PRL_DIR / "README.md").read_text()
PLACEHOLDER_ROOT = "/path/to/MAE-AST"
PLACEHOLDER_CKPT = "/path/to/checkpoint.pt"

# Defines the snippet's one free name; it imports nothing of this project, so whatever
# `mae_ast` the snippet gets is the one its own sys.path line leads to.
WAVEFORMS = """\
import torch
_g = torch.Generator().manual_seed(0)
list_of_16khz_waveforms = [0.1 * torch.randn(16000, generator=_g), 0.1 * torch.randn(27200, generator=_g)]
"""

# What the snippet left behind, for the test to check.
REPORT = """
import json, mae_ast
print("RESULT " + json.dumps({
    "keys": sorted(features),
    "hidden_states": len(features["hidden_states"]),
    "last_is_last": bool((features["last_hidden_state"] == features["hidden_states"][-1]).all()),
    "batch": int(features["last_hidden_state"].shape[0]),
    "mae_ast_file": mae_ast.__file__,
}))
"""


def python_snippet() -> str:
    m = re.search(r"From Python,\s+without touching s3prl:\s*```python\n(.*?)```", README, re.S)
    assert m, "s3prl/README.md: no ```python block after 'From Python, without touching s3prl:'"
    return m.group(1)


def install_line() -> list[str]:
    lines = [line for line in README.splitlines() if line.startswith("cp -r ")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].split("#")[0])


def upstream_folder_name() -> str:
    """The folder the snippet imports hubconf from (``<name>.hubconf``)."""
    m = re.search(r"import_module\(\"(\w+)\.hubconf\"\)", python_snippet())
    assert m, python_snippet()
    return m.group(1)


def test_install_line_copies_a_folder_that_exists():
    _, _, source, dest = install_line()
    assert source.startswith(PLACEHOLDER_ROOT + "/"), source
    folder = ROOT / source[len(PLACEHOLDER_ROOT) + 1:]
    assert folder.is_dir(), f"s3prl/README.md copies {source}, but {folder} does not exist"
    assert (folder / "hubconf.py").is_file() and (folder / "expert.py").is_file()
    # Installed under the name the snippet (and s3prl's -u) imports it by.
    assert folder.name == upstream_folder_name() == dest.rstrip('"').split("/")[-1]
    # The name that shadowed the package must not come back.
    assert folder.name != "mae_ast"


def test_python_snippet_runs_as_written(patch_checkpoint):
    snippet = python_snippet()
    for placeholder in (PLACEHOLDER_ROOT, PLACEHOLDER_CKPT, "list_of_16khz_waveforms"):
        assert placeholder in snippet, f"placeholder {placeholder!r} gone from the README snippet"
    code = snippet.replace(PLACEHOLDER_ROOT, str(ROOT)).replace(PLACEHOLDER_CKPT, str(patch_checkpoint))
    proc = subprocess.run([sys.executable, "-c", WAVEFORMS + code + REPORT], cwd=S3PRL_DIR,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(proc.stdout)

    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    layers = torch.load(patch_checkpoint, weights_only=True)["cfg"]["model"]["encoder_layers"]
    assert result["keys"] == ["hidden_states", "last_hidden_state"]
    assert result["hidden_states"] == layers  # encoder layers 1..L, no input embedding
    assert result["last_is_last"] and result["batch"] == 2
    # The package, not a folder under s3prl/ that happens to share its name.
    assert result["mae_ast_file"] == str(ROOT / "mae_ast" / "__init__.py")
