"""What the pretraining and classification tasks share: no dictionaries, no length
filter beyond the datasets' own, input paths resolved against the launch folder, the
model's patch length handed to the datasets (clips shorter than one patch are skipped),
the fbank cache, the provenance record (``mae_ast.provenance``: what data the run reads,
saved by fairseq in every checkpoint as ``task_state``), and two checks during training:
the files of a batch whose loss is not finite, and a replica checksum before each
validation in data-parallel runs."""

from __future__ import annotations

import logging
import sys

import numpy as np
import torch
from fairseq.tasks import FairseqTask
from omegaconf import open_dict

from .. import provenance
from .run_checks import launch_path, root_config

logger = logging.getLogger(__name__)


def fp32_without_cuda(common) -> None:
    """The seed config sets ``common.fp16: true``; off CUDA fairseq's FP16Optimizer
    crashes (``torch.cuda.current_device()``) and half matmuls on a CPU run ~100x slower
    (180 s against 6.5 s for one step of a 1-layer model), so fp16/bf16 become fp32 there.
    fairseq has no hook between its config and the Trainer that reads these flags
    (``fairseq_cli/train.py`` sets up the task, builds the model, then ``Trainer(cfg, ...)``
    casts it); the task is set up first from that same config, so this runs in
    ``setup_task`` and the checkpoints' ``cfg`` says what really ran."""
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
        self.loaded_provenance: dict | None = None  # a loaded checkpoint's record (load_state_dict)

    @classmethod
    def setup_task(cls, cfg, **kwargs) -> MAE_AST_Audio_Task:
        root = root_config(cfg)
        if root is not None and not kwargs.get("from_checkpoint", False):
            fp32_without_cuda(root.common)
        cfg.data = launch_path(cfg.data)
        if getattr(cfg, "fbank_cache", None):
            cfg.fbank_cache = launch_path(cfg.fbank_cache)
        return cls(cfg)

    # ---- provenance: fairseq saves ``state_dict()`` as every checkpoint's ``task_state`` ----

    def split_files(self, split: str) -> tuple[str, str | None]:
        """The manifest (and label file) a split is read from."""
        import os

        return os.path.join(self.cfg.data, f"{split}.tsv"), None

    def record_provenance(self, root, kind: str, pretraining: dict | None = None) -> dict:
        """Build this run's record of the splits it reads (``dataset.train_subset`` and
        ``valid_subset``) and keep it for ``state_dict``; returns the record."""
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
        state_dict = dict(state_dict or {})
        self.loaded_provenance = state_dict.pop("provenance", None)
        super().load_state_dict(state_dict)

    @property
    def logger(self) -> logging.Logger:
        """The concrete task's module logger (``mae_ast.tasks.mae_ast_pretraining``...)."""
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

    def adopt_patch_length(self, min_frames: int) -> None:
        """The built model's patch length; datasets loaded before the model get it too."""
        self.min_frames = min_frames
        for dataset in self.datasets.values():
            dataset.min_frames = min_frames

    def attach_cache(self, dataset, split: str) -> None:
        if getattr(self.cfg, "fbank_cache", None):
            dataset.use_cache(self.cfg.fbank_cache, split)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad
        )
        # Checked after backward is queued: fairseq's grad-norm check waits for backward
        # a moment later anyway, so this host sync costs little. fairseq then handles the
        # step (fp16: lower the loss scale and skip; fp32: stop with FloatingPointError);
        # we add which clips were in it.
        if "net_input" in sample and not bool(torch.isfinite(loss)):
            self.report_nonfinite(sample, update_num)
        return loss, sample_size, logging_output

    def report_nonfinite(self, sample: dict, update_num: int) -> None:
        ids = sample["id"].tolist()
        dataset = self.datasets.get("train")
        files = [dataset.paths[i] for i in ids] if dataset is not None else "(no 'train' split loaded)"
        self.logger.error(f"non-finite loss at update {update_num}: sample ids {ids}, files {files}")

    def begin_valid_epoch(self, epoch: int, model) -> None:
        """Check that data-parallel replicas hold the same weights: every rank sums its
        parameters, and the spread of the sums across ranks is logged (0 when in sync)."""
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
