"""What the pretraining and classification tasks share: no dictionaries or length filter,
input paths against the launch folder, the model's patch length for the datasets, the fbank
cache, the run folder's lock and provenance record (saved in every checkpoint's
``task_state``), and two training checks: files of a non-finite loss, replica checksums."""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import torch
from fairseq.tasks import FairseqTask
from omegaconf import open_dict

from .. import provenance
from .run_checks import launch_path, lock_run_folder, root_config

logger = logging.getLogger(__name__)


def fp32_without_cuda(common) -> None:
    """fp16/bf16 become fp32 off CUDA: fairseq's FP16Optimizer crashes there and half matmuls
    on a CPU run ~100x slower. Done in ``setup_task``, the last hook before the Trainer reads
    the flags, so the checkpoints' ``cfg`` says what really ran."""
    if (torch.cuda.is_available() and not common.cpu) or not (common.fp16 or common.bf16):
        return
    logger.warning("common.fp16/bf16 need CUDA, which this run does not use (common.cpu=true or no CUDA): "
                   "training in fp32")
    with open_dict(common):
        common.fp16 = common.bf16 = False
        common.memory_efficient_fp16 = common.memory_efficient_bf16 = False


class MAE_AST_Audio_Task(FairseqTask):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.min_frames = 1  # the model's patch length, once it is built
        self.provenance_state: dict | None = None  # this run's record, as saved in checkpoints

    @classmethod
    def setup_task(cls, cfg, **kwargs) -> MAE_AST_Audio_Task:
        root = root_config(cfg)
        if root is not None and not kwargs.get("from_checkpoint", False):
            fp32_without_cuda(root.common)
        cfg.data = launch_path(cfg.data)
        if getattr(cfg, "fbank_cache", None):
            cfg.fbank_cache = launch_path(cfg.fbank_cache)
        return cls(cfg)

    def build_model(self, cfg, from_checkpoint: bool = False):
        model = super().build_model(cfg, from_checkpoint)
        # The model's patch length; datasets loaded before the model get it too.
        self.min_frames = getattr(model, "backbone", model).grid.min_frames
        for dataset in self.datasets.values():
            dataset.min_frames = self.min_frames
        if not from_checkpoint:  # a new or resumed training run, not a checkpoint reload
            self.check_run(model, root_config(self.cfg))
        return model

    def check_run(self, model, root) -> None:
        """The run's checks before any data is read (``run_checks``); ``root`` is fairseq's
        whole config, None for a task config on its own."""

    def split_files(self, split: str) -> tuple[str, str | None]:
        """The manifest (and label file) a split is read from."""
        return os.path.join(self.cfg.data, f"{split}.tsv"), None

    def record_provenance(self, root, kind: str, pretraining: dict | None = None) -> dict:
        """Lock the run folder, then record the splits this run reads (kept for ``state_dict``)."""
        lock_run_folder(root)
        train = str(root.dataset.train_subset)
        valid = [] if root.dataset.disable_validation else str(root.dataset.valid_subset).split(",")
        splits = {name: self.split_files(name) for name in [train, *[v for v in valid if v != train]]}
        record = provenance.build_record(kind, self.cfg.data, splits, train, valid, pretraining)
        self.provenance_state = provenance.to_state(record, str(root.checkpoint.save_dir))
        n = {name: s["n_clips"] for name, s in record["splits"].items()}
        self.logger.info(f"provenance record: {n} clips ({self.provenance_state.get('keys_file') or 'inline'})")
        return record

    def state_dict(self) -> dict:
        state = dict(super().state_dict())
        if self.provenance_state is not None:
            state["provenance"] = self.provenance_state
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        # This run records its own provenance.
        super().load_state_dict({k: v for k, v in (state_dict or {}).items() if k != "provenance"})

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger(type(self).__module__)

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return None

    @property
    def dictionaries(self):
        return None

    def max_positions(self) -> tuple[int, int]:
        return (sys.maxsize, sys.maxsize)

    def filter_indices_by_size(self, indices: np.ndarray, *args, **kwargs) -> np.ndarray:
        return indices  # the datasets skip (and name) clips shorter than one patch instead

    def attach_cache(self, dataset, split: str) -> None:
        if getattr(self.cfg, "fbank_cache", None):
            dataset.use_cache(self.cfg.fbank_cache, split)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        loss, sample_size, logging_output = super().train_step(sample, model, criterion, optimizer, update_num,
                                                               ignore_grad)
        # This host sync costs little: fairseq's grad-norm check waits for backward anyway.
        if "net_input" in sample and not bool(torch.isfinite(loss)):  # fairseq skips the step; name its clips
            ids = sample["id"].tolist()
            dataset = self.datasets.get("train")
            files = [dataset.paths[i] for i in ids] if dataset is not None else "(no 'train' split loaded)"
            self.logger.error(f"non-finite loss at update {update_num}: sample ids {ids}, files {files}")
        return loss, sample_size, logging_output

    def begin_valid_epoch(self, epoch: int, model) -> None:
        """Log the spread across data-parallel ranks of their parameter sums (0 when in sync)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        world = torch.distributed.get_world_size()
        checksum = sum(p.detach().double().sum() for p in model.parameters())
        sums = [torch.zeros((), dtype=torch.float64, device=checksum.device) for _ in range(world)]
        torch.distributed.all_gather(sums, checksum)
        spread = float(max(sums) - min(sums))
        log = self.logger.info if spread == 0.0 else self.logger.warning
        log(f"replica check before validation (epoch {epoch}): parameter checksum spread "
            f"across {world} ranks = {spread:.3g}")
