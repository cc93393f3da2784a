#!/usr/bin/env bash
# HEAR 2021 scores for a MAE-AST checkpoint from hear-eval-kit 2021.1.3's own runners:
#   scripts/hear_eval.sh CKPT TASKS_DIR [OUT_DIR] [PREDICTION_OPTIONS...]
# TASKS_DIR holds tasks in hear-preprocess's layout (<task>/task_metadata.json,
# labelvocabulary.csv, <split>.json, 16000/<split>/*.wav). Embeddings go to
# OUT_DIR/embeddings/mae_ast.hear/<task>/ (default OUT_DIR: ./hear_eval), and heareval's
# predictions runner writes its scores there: test.predicted-scores.json per task.
# PREDICTION_OPTIONS go to heareval.predictions.runner (e.g. --grid faster --grid-points 2).
#   HEAR_VENV      the venv (default .cache/hear-venv; delete it to rebuild)
#   TORCH_SPEC     torch requirement (default torch==2.13.0; name a CUDA build for a GPU)
#   TORCH_FROM     a Python whose torch and numeric stack the new venv shares by hard links (scripts/link_packages.py)
#   PYTHON         interpreter for the venv (default python3)
#   MODEL_OPTIONS  JSON kwargs for mae_ast.hear.load_model (default {}), e.g. '{"layer": 8}'
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,14p' "$0" >&2
    exit 2
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${HEAR_VENV:-$REPO/.cache/hear-venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
STAMP=$VENV/.mae_ast_hear_v1
MODEL_OPTIONS=${MODEL_OPTIONS:-"{}"}
CKPT=$(realpath "$1")
TASKS=$(realpath "$2")
OUT=$(realpath -m "${3:-hear_eval}")
shift $(( $# >= 3 ? 3 : 2 ))

if [ ! -f "$STAMP" ]; then
    echo "hear_eval: creating $VENV (a few minutes, once)" >&2
    "$PYTHON" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
    # the numeric stack this venv would install at the same versions anyway
    [ -z "${TORCH_FROM:-}" ] || "$TORCH_FROM" "$REPO/scripts/link_packages.py" "$VENV" \
        torch numpy scipy scikit-learn av soundfile tqdm pyyaml matplotlib
    # setuptools < 81 still ships pkg_resources, which Lightning 1.9 imports.
    "${PIP[@]}" install "setuptools<81" "$TORCH_SPEC"
    # --no-deps: heareval pins numpy 1.19 / numba 0.48 (no wheels for today's Python) and
    # asks for tensorflow, which it only imports (kits/heareval_run.py stands in for it).
    "${PIP[@]}" install --no-deps heareval==2021.1.3
    # Lightning 1.9: heareval passes Trainer(gpus=...), gone in 2.x.
    "${PIP[@]}" install "pytorch-lightning>=1.9,<2" click intervaltree more-itertools pandas \
        python-slugify soundfile torchinfo tqdm scikit-learn scipy pynvml dcase-util sed-eval
    "${PIP[@]}" install -e "$REPO"
    touch "$STAMP"
fi

RUN=("$VENV/bin/python" "$REPO/kits/heareval_run.py")
"${RUN[@]}" embeddings mae_ast.hear --model "$CKPT" --tasks-dir "$TASKS" \
    --embeddings-dir "$OUT/embeddings" --model-options "$MODEL_OPTIONS"
"${RUN[@]}" predictions "$OUT"/embeddings/mae_ast.hear*/*/ "$@"
for scores in "$OUT"/embeddings/mae_ast.hear*/*/test.predicted-scores.json; do
    echo "hear_eval: $scores"
done
