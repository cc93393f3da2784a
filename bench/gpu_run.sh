#!/usr/bin/env bash
# Every GPU benchmark of BENCHMARKS.md, in two calls of the device tool (the wheels of
# both together exceed its 64 MiB; bench/device_wheels.sh makes the two folders):
#
#   bash bench/gpu_run.sh [--device cpu] [--toy] [STEP ...]
#   call 1, carry=[".whl/gpu"]:   bash bench/gpu_run.sh          (~7-9 minutes on an H100/H200)
#   call 2, carry=[".whl/data"]:  bash bench/gpu_run.sh data     (~2 minutes)
#
# Steps, in this order (the headline first, so a lease cut short still yields it):
#   machine    nvidia-smi (GPU, driver, clocks) -> nvidia_smi.txt; lscpu -> lscpu.txt
#   headline   ours vs the original, bf16, patch and frame: clips/s and MFU
#   pretrain   pretrain_step.py, original / mae-ast / ssast-style, fp32 and fp16, 20 steps
#              (bf16: the headline; ours vs ssast-style in bf16: the fused and compile rows)
#   halfmodel  bf16 with ours also as fairseq's common.bf16 (half model, fp32 masters)
#   fused      bf16, --fused-adam, plus the torch.profiler table (--profile)
#   compile    bf16, --compile --fused-adam (compile's effect = this row vs "fused")
#   precision  precision_check.py: fp16/bf16 losses against fp32
#   finetune   finetune_step.py: AudioSet / ESC-50 / Speech Commands fine-tuning steps, bf16
#   data       data_pipeline.py: flac and Opus mkv, and the fbank cache, workers 1 2 4 8 16
#              (not by default: it is call 2, with PyAV; it needs no fairseq)
#
# --device cpu (or GPU_RUN_DEVICE=cpu) runs the same steps on a CPU; --toy (or
# GPU_RUN_TOY=1; the default on a CPU) at toy sizes (2-layer models, 1-2 clips, 2 steps):
# bench/rehearse_device.sh runs it so, in an environment built like the device's.
#
# Wheels: every .whl/*/*.whl that travelled (GPU_RUN_WHEELS/*/*.whl) is installed first,
# as on the device (pip --no-index --no-deps --target GPU_RUN_SITE, default /tmp/site; a
# file in two folders once), and put on PYTHONPATH. Needs no network. Otherwise the machine must have Python
# 3.11/3.12, a torch with CUDA (Triton for --compile), and what bench/device_wheels.sh
# lists (set PYTHON=... for another interpreter; scripts/setup.sh's .venv has it all).
#
# Results: JSON (and the printed tables, *.log) under $OUT when set (the device tool
# copies $OUT back), else bench/results/. Each step ends with "OK step NAME", "FAILED
# step NAME" or "SKIPPED step NAME"; a failing or timed-out step never stops the next; a
# global deadline (GPU_RUN_SECONDS, default 570) skips what would not finish. The last
# line counts them; the exit status is 0 only when every step chosen was OK.
set -o pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1
DEV=${GPU_RUN_DEVICE:-cuda}
TOY=${GPU_RUN_TOY:-}
ARGS=()
while [ "$#" -gt 0 ]; do
    case $1 in
        --device) DEV=$2; shift 2 ;;
        --device=*) DEV=${1#*=}; shift ;;
        --toy) TOY=1; shift ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
[ "$DEV" = cpu ] && TOY=${TOY:-1}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
RES=${OUT:-bench/results}
mkdir -p "$RES"
ALL="machine headline pretrain halfmodel fused compile precision finetune data"
STEPS=" ${ARGS[*]:-machine headline pretrain halfmodel fused compile precision finetune} "
for s in $STEPS; do [[ " $ALL " == *" $s "* ]] || { echo "unknown step $s (steps: $ALL)"; exit 2; }; done
# At toy sizes on a CPU compiling and the original's Python masking take longer than the
# GPU limits allow, so every limit is scaled there.
SCALE=1
[ -n "$TOY" ] && SCALE=4
DEADLINE=$((SECONDS + ${GPU_RUN_SECONDS:-$((570 * SCALE))}))

wheels=()
declare -A seen=()
for w in "${GPU_RUN_WHEELS:-.whl}"/*/*.whl; do
    [ -f "$w" ] || continue
    b=$(basename "$w")
    [ -n "${seen[$b]:-}" ] || { seen[$b]=1; wheels+=("$w"); }
done
if [ "${#wheels[@]}" -gt 0 ]; then
    SITE=${GPU_RUN_SITE:-/tmp/site}
    echo "installing ${#wheels[@]} carried wheels into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "${wheels[@]}" || echo "FAILED wheel install (the steps that need them will fail too)"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

OKS=() FAILS=() SKIPS=()
# run NAME LIMIT_S CMD...: at most LIMIT_S (x SCALE) seconds and never past the deadline;
# the output also goes to $RES/NAME.log; a failure is reported, never fatal.
run() {
    local name=$1 limit=$(($2 * SCALE)) left=$((DEADLINE - SECONDS)) t0=$SECONDS
    shift 2
    if [ "$left" -lt 15 ]; then echo "SKIPPED step $name (deadline)"; SKIPS+=("$name"); return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== step $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$RES/$name.log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then
        echo "OK step $name ($((SECONDS - t0))s)"; OKS+=("$name")
    else
        echo "FAILED step $name (rc=$rc; 124 = timed out after ${limit}s)"; FAILS+=("$name")
    fi
}
want() { [[ "$STEPS" == *" $1 "* ]]; }

# What the chosen steps import, checked first so a missing wheel is named at once.
MODS="torch"
for s in headline pretrain halfmodel fused compile precision finetune; do
    want $s && { MODS="$MODS fairseq s3prl.upstream.mae_ast.mae_ast"; break; }
done
want data && MODS="$MODS soundfile av"
"$PY" - $MODS <<'EOF' || echo "FAILED environment check (see bench/device_wheels.sh)"
import importlib, platform, sys
import torch
for name in sys.argv[1:]:
    importlib.import_module(name)
gpu = torch.cuda.is_available() and torch.cuda.get_device_name()
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", gpu,
      "| imported:", " ".join(sys.argv[1:]))
EOF

if [ -n "$TOY" ]; then  # code paths only: 2-layer 256-d models, a clip or two, two steps
    PSIZE="--tiny --clips 2 --steps 2 --warmup 1"
    FSIZE="--tiny --clips 1 --pretrain-clips 1 --steps 1 --warmup 0"
    DSIZE="--clips 4 --workers 1,2"
    CSIZE="--tiny --clips 2"
else
    PSIZE="--steps 20 --warmup 5"
    FSIZE="--steps 10 --warmup 3"
    DSIZE="--clips 192 --workers 1,2,4,8,16"
    CSIZE=""
fi
P="$PY bench/pretrain_step.py --device $DEV --out $RES $PSIZE"
want machine && run machine 20 bash -c "{ [ $DEV = cpu ] || nvidia-smi | tee '$RES/nvidia_smi.txt'; } &&
    { lscpu || grep -m1 'model name' /proc/cpuinfo; } | tee '$RES/lscpu.txt'"
want headline && run headline 120 $P --dtypes bf16 --variants original,mae-ast --tag headline_bf16
want pretrain && run pretrain 130 $P --dtypes fp32,fp16 --tag main
want halfmodel && run halfmodel 70 $P --dtypes bf16 --precision-mode half-model --tag bf16_halfmodel
want fused && run fused 80 $P --dtypes bf16 --variants mae-ast,ssast-style --fused-adam --profile --tag bf16_fused
want compile && run compile 150 $P --dtypes bf16 --variants mae-ast,ssast-style --compile --fused-adam \
    --tag bf16_compile_fused
want precision && run precision 45 "$PY" bench/precision_check.py --device "$DEV" $CSIZE
want finetune && run finetune 70 "$PY" bench/finetune_step.py --device "$DEV" --dtypes bf16 $FSIZE --out "$RES"
want data && run data 110 "$PY" bench/data_pipeline.py $DSIZE --formats flac16,mkv --compare-clips 0 --out "$RES"
ls -l "$RES"
echo "gpu_run.sh done in ${SECONDS}s on $DEV${TOY:+ (toy sizes)}: ${#OKS[@]} OK, ${#FAILS[@]} FAILED (${FAILS[*]})," \
     "${#SKIPS[@]} SKIPPED (${SKIPS[*]})"
[ "${#FAILS[@]}" -eq 0 ] && [ "${#SKIPS[@]}" -eq 0 ]
