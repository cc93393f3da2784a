#!/usr/bin/env bash
# Create .venv in the repo root with everything MAE-AST needs (idempotent).
#   TORCH_SPEC   torch requirement (default torch==2.13.0; a CUDA build works too)
#   PYTHON       interpreter for the venv (3.11 or 3.12: ve-fairseq ships wheels for those)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
STAMP=.venv/.mae_ast_setup_v4

if [ -f "$STAMP" ]; then exit 0; fi
"$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "$TORCH_SPEC"
# fairseq 0.12 for Python 3.11/3.12. --no-deps: its metadata asks for torchaudio, which
# would pull another torch; its real runtime needs are named here instead.
$PIP install -q --no-deps ve-fairseq==0.12.3
$PIP install -q cffi "hydra-core==1.3.2" "omegaconf==2.3.0" regex sacrebleu bitarray \
    scikit-learn packaging tensorboardX
$PIP install -q -e ".[test,hf]"
# HEAR's validator, for tests/test_hear.py. Its metadata caps Python at 3.8 and asks for
# tensorflow, which it only uses for tf models: tests/stubs/tensorflow stands in.
$PIP install -q --no-deps --ignore-requires-python hearvalidator==2021.0.6
# s3prl's upstream interface, without its torch/torchaudio pins.
$PIP install -q --no-deps s3prl==0.4.18
touch "$STAMP"
echo "set up .venv ($(.venv/bin/python -c 'import torch, fairseq; print("torch", torch.__version__, "fairseq", fairseq.__version__)'))"
