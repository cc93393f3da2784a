#!/usr/bin/env bash
# Set up .venv if needed, then pretrain a small MAE-AST (patch, chunk_mask) on the
# committed demo audio with fairseq-hydra-train, and print a summary of the losses.
#   OUT=runs/demo    where the run (log, tensorboard, checkpoints) goes
#   Extra args are passed to fairseq-hydra-train as overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-runs/demo}
rm -rf "$OUT"
CPU=$(.venv/bin/python -c 'import torch; print(str(not torch.cuda.is_available()).lower())')
.venv/bin/fairseq-hydra-train \
  --config-dir "$PWD/config/pretrain" --config-name mae_ast \
  common.user_dir="$PWD/mae_ast" task.data="$PWD/data/demo" \
  model.encoder_layers=4 model.decoder_layers=2 \
  model.random_mask_prob=0.75 task.mask_type=chunk_mask \
  distributed_training.distributed_world_size=1 distributed_training.nprocs_per_node=1 \
  dataset.num_workers=2 dataset.max_tokens=2000000 dataset.validate_interval_updates=20 \
  lr_scheduler.warmup_updates=10 optimization.max_update=40 optimization.lr=[0.0002] \
  checkpoint.save_interval=1000 checkpoint.save_interval_updates=1000 \
  common.log_interval=10 common.cpu="$CPU" common.tensorboard_logdir="$PWD/$OUT/tblog" \
  checkpoint.save_dir="$PWD/$OUT/checkpoints" hydra.run.dir="$PWD/$OUT" "$@"
.venv/bin/python scripts/summarize_run.py "$OUT"
