#!/usr/bin/env bash
# Download exactly the wheels bench/gpu_run.sh needs on a lent GPU machine beyond what
# that machine holds (bench/device_packages.txt), for its CPython 3.12 on manylinux
# x86-64, into the ignored .whl/; check that each set installs by itself, and print what
# travels against the 64 MiB limit (bench/wheel_check.py). Needs PyPI: run it here.
# Idempotent (pip skips wheels already present).
#
#   bash bench/device_wheels.sh
#
# Everything together is ~66 MiB with the tree (PyAV alone is 34 MiB), over the limit,
# so the run is two calls, each carrying one folder:
#   .whl/gpu   fairseq and the original model: every step but "data"   (~30 MiB with the tree)
#   .whl/data  PyAV, soundfile: the data-pipeline step, which needs no fairseq (~44 MiB)
# bench/gpu_run.sh installs whichever folders travelled (pip --no-index --no-deps --target;
# a wheel in both folders is installed once).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
grep -qx '/.whl/' .gitignore || { echo ".whl/ must be ignored (.gitignore)"; exit 1; }
mkdir -p .whl/gpu .whl/data

# Versions: the ones the test suite runs with. Not carried, since the device holds them:
# torch, numpy, sacrebleu, regex, scikit-learn, packaging, pyyaml, protobuf, tqdm.
GPU=(
    ve-fairseq==0.12.3                  # fairseq (its C extensions built for cp312)
    hydra-core==1.3.2 omegaconf==2.3.0  # fairseq's config system (antlr4 4.9.3 below)
    bitarray==3.12.3                    # imported by fairseq.data
    tensorboardX==2.6.5                 # fairseq's progress bars import it when present
    cffi==2.1.1 pycparser==3.12         # fairseq's metadata asks for cffi (never imported)
)
DATA=(
    av==18.1.0                          # Opus mkv (the wheel bundles FFmpeg)
    soundfile==0.14.0 cffi==2.1.1 pycparser==3.12   # flac (the wheel bundles libsndfile)
)
# pip matches manylinux tags exactly: name every glibc level up to the device's (2.39,
# Ubuntu 24.04's Python 3.12.3) that these packages publish.
PLATFORMS=()
for tag in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 \
           manylinux_2_24 manylinux_2_17 manylinux2014 manylinux_2_5 manylinux1; do
    PLATFORMS+=(--platform "${tag}_x86_64")
done
fetch() {  # fetch DIR SPEC...
    local dir=$1
    shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" --platform any -d "$dir" "$@"
}
fetch .whl/gpu "${GPU[@]}"
fetch .whl/data "${DATA[@]}"
# Published as source only, and pure Python, so a wheel built here is the device's too:
# antlr4-python3-runtime 4.9.3 (hydra-core's pin) and s3prl 0.4.18 (the ORIGINAL model,
# s3prl.upstream.mae_ast).
for spec in antlr4-python3-runtime==4.9.3 s3prl==0.4.18; do
    stem=$(echo "${spec%==*}" | tr - _)-${spec#*==}
    ls .whl/gpu/"$stem"-*.whl >/dev/null 2>&1 || "$PY" -m pip wheel -q --no-deps -w .whl/gpu "$spec"
done
rc=0
for dir in .whl/gpu .whl/data; do
    echo "== carry=[\"$dir\"]"
    "$PY" bench/wheel_check.py "$dir" || rc=1
done
exit $rc
