#!/usr/bin/env bash
# SUPERB through s3prl 0.4.18's own run_downstream.py, on today's torch, one command:
#   scripts/superb.sh ks1 -k CKPT -o "config.downstream_expert.datarc.speech_commands_root='/sc/',,..."
#   scripts/superb.sh sid -k CKPT -o "config.downstream_expert.datarc.file_path='/VoxCeleb1/'"
#   scripts/superb.sh er  -k CKPT -o "config.downstream_expert.datarc.root='/IEMOCAP/',,config.downstream_expert.datarc.test_fold=fold1"
#   scripts/superb.sh run ANY_RUN_DOWNSTREAM_ARGS...     # s3prl's CLI as is, through the same fixes
# A task name trains with the paper's settings (s3prl/config/<task>), then evaluates the
# test split with dev-best.ckpt; see scripts/superb.py and s3prl/README.md.
#
# It creates (once) or reuses a venv for s3prl's runner, installs our upstream into that
# s3prl idempotently, and runs kits/s3prl_run.py (the torchaudio stand-in, safe globals).
#   SUPERB_VENV  the venv (default .cache/superb-venv; delete it to rebuild)
#   TORCH_SPEC   torch requirement (default torch==2.13.0; name a CUDA build for a GPU)
#   TORCH_FROM   a Python whose torch and numeric stack the new venv shares by hard links (scripts/link_packages.py)
#   PYTHON       interpreter for the venv (default python3; 3.10-3.12)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${SUPERB_VENV:-$REPO/.cache/superb-venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
STAMP=$VENV/.mae_ast_superb_v1

if [ ! -f "$STAMP" ]; then
    echo "superb: creating $VENV (a few minutes, once)" >&2
    "$PYTHON" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
    # the numeric stack this venv would install at the same versions anyway
    [ -z "${TORCH_FROM:-}" ] || "$TORCH_FROM" "$REPO/scripts/link_packages.py" "$VENV" \
        torch numpy scipy scikit-learn av soundfile tqdm pyyaml
    # catalyst 22.4's metadata has a version pin pip >= 24.1 refuses to parse.
    "${PIP[@]}" install "pip<24.1"
    "${PIP[@]}" install "$TORCH_SPEC"
    # --no-deps: s3prl's metadata would replace torch (and pull torchaudio, which does not
    # import beside a CPU torch); catalyst's pins an old tensorboardX and accelerate.
    "${PIP[@]}" install --no-deps s3prl==0.4.18 catalyst==22.4
    # What the runner and the KS1/SID/ER tasks import, named by hand. huggingface_hub < 1
    # still has HfFolder and Repository (runner.py imports them); transformers 4.x is the
    # line that works with it (hub.py imports the hf_* upstreams); librosa is for SID.
    "${PIP[@]}" install "huggingface_hub<1" "transformers>=4.40,<5" tensorboardX pyyaml tqdm \
        hydra-slayer librosa
    "${PIP[@]}" install -e "$REPO"
    touch "$STAMP"
fi

# Our upstream, copied fresh each run (so an edit here reaches s3prl) into the one folder,
# and the hub.py line added once.
S3PRL=$("$VENV/bin/python" -c 'import os, s3prl; print(os.path.dirname(s3prl.__file__))')
rm -rf "$S3PRL/upstream/mae_ast_plus"
cp -r "$REPO/s3prl/mae_ast_plus" "$S3PRL/upstream/mae_ast_plus"
LINE='from s3prl.upstream.mae_ast_plus.hubconf import *'
grep -qxF "$LINE" "$S3PRL/hub.py" || echo "$LINE" >> "$S3PRL/hub.py"

exec "$VENV/bin/python" "$REPO/scripts/superb.py" "$@"
