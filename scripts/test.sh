#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite (CPU). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# torchaudio's own kaldi.py, the fbank reference (pure Python; fetched, never installed).
bash scripts/fetch_torchaudio_reference.sh || echo "torchaudio reference unavailable: fbank reference tests will skip"
exec .venv/bin/python -m pytest -q "$@"
