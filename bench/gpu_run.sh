#!/usr/bin/env bash
# Every GPU benchmark of BENCHMARKS.md in one call (~7-9 minutes on an H100/H200):
#
#   bash bench/gpu_run.sh [STEP ...]     # default: all steps, in the order below
#
# Steps: smi pretrain halfmodel fused compile precision data finetune
#   smi        nvidia-smi (GPU, driver, clocks) -> nvidia_smi.txt
#   pretrain   pretrain_step.py, original / mae-ast / ssast-style, fp32 fp16 bf16, 20 steps
#   halfmodel  the same in bf16 with ours also as fairseq's common.bf16 (half model, fp32 masters)
#   fused      bf16, --fused-adam, plus the torch.profiler table (--profile)
#   compile    bf16, --compile --fused-adam (compile's effect = this row vs "fused")
#   precision  precision_check.py: fp16/bf16 losses against fp32
#   data       data_pipeline.py: flac and Opus mkv, and the fbank cache, workers 1 2 4 8 16
#   finetune   finetune_step.py: AudioSet / ESC-50 / Speech Commands fine-tuning steps, bf16
#
# Results: JSON (and the printed tables, *.log) under $OUT when set (the device tool
# copies $OUT back), else bench/results/. A failing or timed-out step is reported
# ("FAILED ...") and the next one runs; a global deadline (GPU_RUN_SECONDS, default
# 570) skips what would not finish, most important steps first.
#
# Needs no network. The machine must already have (scripts/setup.sh makes this .venv;
# set PYTHON=... to use another interpreter):
#   - Python 3.11 or 3.12
#   - torch, a CUDA build (>= 2.5 for every SDPA backend check), with Triton for --compile
#   - ve-fairseq==0.12.3 installed --no-deps, plus cffi hydra-core==1.3.2 omegaconf==2.3.0
#     regex sacrebleu bitarray scikit-learn packaging tensorboardX
#   - s3prl==0.4.18 installed --no-deps (the ORIGINAL model: s3prl.upstream.mae_ast)
#   - numpy, soundfile (libsndfile), av (PyAV with libopus: the mkv data), tqdm
#   - this repository (pip install -e . or nothing: PYTHONPATH is set below)
set -x -o pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
RES=${OUT:-bench/results}
mkdir -p "$RES"
DEADLINE=$((SECONDS + ${GPU_RUN_SECONDS:-570}))

# run NAME LIMIT_S CMD...: at most LIMIT_S seconds and never past the deadline; the
# output also goes to $RES/NAME.log; a failure is reported, never fatal.
run() {
    local name=$1 limit=$2 left=$((DEADLINE - SECONDS))
    shift 2
    if [ "$left" -lt 15 ]; then echo "SKIPPED $name (deadline)"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$RES/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || echo "FAILED step $name (rc=$rc; 124 = timed out after ${limit}s)"
}

want() { [[ " $STEPS " == *" $1 "* ]]; }
STEPS=" $* "
[ "$#" -eq 0 ] && STEPS=" smi pretrain halfmodel fused compile precision data finetune "

"$PY" -c 'import torch, fairseq, s3prl, av, soundfile; print("torch", torch.__version__, "cuda", torch.version.cuda,
  "fairseq", fairseq.__version__, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name())' \
    || echo "FAILED environment check (see the requirements at the top of bench/gpu_run.sh)"

P="$PY bench/pretrain_step.py --device cuda --out $RES"
want smi && { nvidia-smi 2>&1 | tee "$RES/nvidia_smi.txt" || echo "FAILED step smi"; }
want pretrain && run pretrain 180 $P --dtypes fp32,fp16,bf16 --steps 20 --warmup 5 --tag main
want halfmodel && run halfmodel 70 $P --dtypes bf16 --steps 20 --warmup 5 --precision-mode half-model \
    --tag bf16_halfmodel
want fused && run fused 80 $P --dtypes bf16 --steps 20 --warmup 5 --variants mae-ast,ssast-style \
    --fused-adam --profile --tag bf16_fused
want compile && run compile 150 $P --dtypes bf16 --steps 20 --warmup 5 --variants mae-ast,ssast-style \
    --compile --fused-adam --tag bf16_compile_fused
want precision && run precision 45 "$PY" bench/precision_check.py --device cuda
want data && run data 110 "$PY" bench/data_pipeline.py --clips 192 --workers 1,2,4,8,16 --formats flac16,mkv \
    --compare-clips 0 --out "$RES"
want finetune && [ -f bench/finetune_step.py ] && \
    run finetune 70 "$PY" bench/finetune_step.py --device cuda --dtypes bf16 --steps 10 --warmup 3 --out "$RES"
ls -l "$RES"
echo "gpu_run.sh done in ${SECONDS}s"
