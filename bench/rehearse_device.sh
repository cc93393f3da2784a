#!/usr/bin/env bash
# Rehearse the GPU measurement here, on the CPU, as the lent machine will run it:
#
#   bash bench/rehearse_device.sh
#
# 1. A CPython 3.12 venv (.cache/rehearse/py312, kept between runs) holding only what the
#    device's image holds: torch 2.11.0 and numpy 2.5.2 (the device's versions; PyPI's
#    torch, which runs on a CPU too) and the image's packages the run reads (scikit-learn,
#    sacrebleu, regex, pyyaml, ...). Every package in it must be on
#    bench/device_packages.txt, or the rehearsal stops.
# 2. bench/device_wheels.sh, unless .whl/gpu and .whl/data hold wheels already.
# 3. Each of the two device calls in a copy of what travels (the files git does not
#    ignore, plus the one carried wheel folder), with that venv's python3 first on PATH,
#    no pip configuration and no PYTHONPATH: bench/gpu_run.sh installs the wheels with
#    pip --no-index --no-deps --target, as there, then runs its steps with --device cpu
#    at toy sizes. Passes when both calls end with every step OK.
#
# Interpreter: REHEARSE_PYTHON, else python3.12 on PATH, pyenv's or uv's 3.12.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REH=$ROOT/.cache/rehearse
VENV=$REH/py312
# The device's image: torch and numpy at its versions, then what the run imports of it.
DEVICE_IMAGE=(torch==2.11.0 numpy==2.5.2 scikit-learn sacrebleu regex packaging pyyaml protobuf tqdm)
t_start=$SECONDS
mkdir -p "$REH"

find_python() {
    local p
    for p in "${REHEARSE_PYTHON:-}" "$(command -v python3.12 || true)" \
             "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 \
             "$(command -v uv >/dev/null && uv python find 3.12 2>/dev/null || true)"; do
        [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import sys, venv; assert sys.version_info[:2] == (3, 12)' \
            2>/dev/null && { echo "$p"; return; }
    done
    return 1
}

stamp="${DEVICE_IMAGE[*]}"
if [ "$(cat "$VENV/.device_image" 2>/dev/null)" != "$stamp" ]; then
    PY312=$(find_python) || { echo "no CPython 3.12 here (set REHEARSE_PYTHON=/path/to/python3.12)"; exit 1; }
    echo "== building $VENV from $PY312 (once: ~3 GB, torch with its CUDA libraries)"
    rm -rf "$VENV"
    "$PY312" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q "${DEVICE_IMAGE[@]}"
    echo "$stamp" >"$VENV/.device_image"
fi
# Nothing may be in the venv that the device lacks, or the rehearsal would pass where
# the device fails. -I: the repository root (a *.egg-info of the editable install there)
# is not on the path of this check.
"$VENV/bin/python" -I - "$ROOT/bench/device_packages.txt" <<'EOF'
import sys
from importlib.metadata import distributions
from packaging.utils import canonicalize_name
held = {canonicalize_name(ln.split("#")[0].strip()) for ln in open(sys.argv[1]) if ln.split("#")[0].strip()}
extra = sorted({canonicalize_name(d.metadata["Name"]) for d in distributions()} - held)
if extra:
    sys.exit(f"the rehearsal venv holds packages the device does not: {extra}")
print(f"rehearsal venv: python {sys.version.split()[0]}, every package on the device's list")
EOF
t_venv=$SECONDS

ls .whl/gpu/*.whl .whl/data/*.whl >/dev/null 2>&1 || bash bench/device_wheels.sh
t_wheels=$SECONDS

# call FOLDER STEP...: one device call in a fresh copy of what travels with carry=[FOLDER].
call() {
    local carried=$1 dir=$REH/tree_$(basename "$1") t0=$SECONDS
    shift
    rm -rf "$dir" && mkdir -p "$dir/$carried"
    git ls-files -z --cached --others --exclude-standard | grep -zv '^\.venv$' | \
        (cd "$ROOT" && xargs -0 cp --parents -P -t "$dir")
    cp "$carried"/*.whl "$dir/$carried/"
    echo "== device call, carry=[\"$carried\"]: bash bench/gpu_run.sh --device cpu $*"
    (cd "$dir" && env -u PYTHONPATH -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null PYTHONNOUSERSITE=1 \
        PATH="$VENV/bin:$PATH" OUT="$REH/out_$(basename "$carried")" GPU_RUN_SITE="$dir/site" \
        bash bench/gpu_run.sh --device cpu "$@") 2>&1 | tee "$REH/call_$(basename "$carried").log"
    local rc=${PIPESTATUS[0]}
    echo "== call carry=[\"$carried\"]: rc=$rc in $((SECONDS - t0))s"
    return "$rc"
}
rc=0
call .whl/gpu || rc=1
t_gpu=$SECONDS
call .whl/data data || rc=1
echo "rehearse_device.sh: venv $((t_venv - t_start))s, wheels $((t_wheels - t_venv))s," \
     "call 1 $((t_gpu - t_wheels))s, call 2 $((SECONDS - t_gpu))s, total $((SECONDS - t_start))s:" \
     "$([ $rc -eq 0 ] && echo 'every step OK' || echo FAILED)"
exit $rc
