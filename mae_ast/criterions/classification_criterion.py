"""``mae_ast_classification``: cross-entropy (single-label) or BCE (multi-label) on clips,
with whole-split validation metrics.

Targets are ``(B, C)`` floats (one-hot, multi-hot, or soft under mixup). At validation
each batch's probabilities and targets go into the logging output; ``reduce_metrics``
feeds them to a meter that keeps every batch of the split and computes
``mae_ast.metrics.classification_metrics`` over all of them, so ``accuracy`` or
``mAP``/``auc``/``d_prime`` are split-level values (mAP does not average over batches)
and can be ``checkpoint.best_checkpoint_metric``.
"""


from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import meters
from fairseq.logging.meters import Meter

from ..models.class_scores import probabilities
from ..metrics import classification_metrics
from .mae_ast_criterion import skipped_batch_loss

LOSS_CHOICES = ChoiceEnum(["auto", "ce", "bce"])
SCORES_KEY = "_scores"  # hidden meter: fairseq does not print keys starting with "_"


@dataclass
class Classification_Criterion_Config(FairseqDataclass):
    loss: LOSS_CHOICES = field(default="auto", metadata={
        "help": "auto: ce for single-label, bce for multi-label; bce on single-label is SSAST's Speech "
                "Commands recipe"})


class ScoresMeter(Meter):
    """Every validation batch's scores and targets; the metric of the whole split."""

    def __init__(self, multi_label: bool = False) -> None:
        self.multi_label = multi_label
        self.reset()

    def reset(self) -> None:
        self.scores: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def update(self, scores: np.ndarray, targets: np.ndarray, multi_label: bool) -> None:
        self.multi_label = multi_label  # a meter restored from a checkpoint starts with the default
        self.scores.append(scores)
        self.targets.append(targets)

    def metrics(self) -> dict:
        if not self.scores:
            return {}
        return classification_metrics(np.concatenate(self.scores), np.concatenate(self.targets), self.multi_label)

    @property
    def smoothed_value(self) -> float:
        return float(len(self.scores))

    def state_dict(self) -> dict:
        return {}  # scores are per validation run; checkpoints need not carry them


# fairseq also logs validation into its persistent "valid" aggregator, which checkpoints
# save and resumes rebuild by class name from fairseq.logging.meters' namespace: make the
# name resolvable there (the task empties this meter before each validation run).
meters.ScoresMeter = ScoresMeter


def reset_scores(aggregator: str = "valid") -> None:
    """Forget the scores of earlier validation runs (else the persistent aggregator grows)."""
    meter = metrics.get_meter(aggregator, SCORES_KEY)
    if meter is not None:
        meter.reset()


def _metric(key: str):
    return lambda meters: meters[SCORES_KEY].metrics().get(key, float("nan"))


@register_criterion("mae_ast_classification", dataclass=Classification_Criterion_Config)
class Classification_Criterion(FairseqCriterion):
    def __init__(self, task, loss: str = "auto") -> None:
        super().__init__(task)
        self.multi_label = bool(task.cfg.multi_label)
        self.loss = str(loss) if str(loss) != "auto" else ("bce" if self.multi_label else "ce")

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Summed over clips (fairseq divides by sample_size = clips)."""
        logits = logits.float()
        if self.loss == "ce":  # soft targets: -sum t log p, = cross-entropy for one-hot rows
            return -(target * F.log_softmax(logits, dim=-1)).sum()
        # Mean over classes per clip, as torch's BCEWithLogitsLoss (SSAST) averages.
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=-1).sum()

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return probabilities(logits, self.multi_label)

    def forward(self, model, sample: dict, reduce: bool = True):
        if "net_input" not in sample:
            loss, size, log = skipped_batch_loss(model, sample)
            return loss, size, {k: log[k] for k in ("loss", "nsentences", "sample_size", "skipped_clips")}
        logits = model(**sample["net_input"])
        target = sample["target"].to(logits.dtype)
        loss = self.compute_loss(logits, target)
        n = int(target.shape[0])
        log = {"loss": loss.detach(), "nsentences": n, "sample_size": n,
               "skipped_clips": sample.get("n_skipped", 0)}
        if not model.training:  # the whole split's metric needs every clip's scores
            log["scores"] = self.scores(logits).detach().cpu().numpy()
            log["targets"] = sample["target"].cpu().numpy()
            log["multi_label"] = self.multi_label
        return loss, n, log

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        def total(key):
            return sum(float(log.get(key, 0)) for log in logging_outputs)

        sample_size = total("sample_size")
        metrics.log_scalar("loss", total("loss") / max(sample_size, 1), sample_size, round=4)
        metrics.log_scalar_sum("skipped_clips", total("skipped_clips"))
        batches = [log for log in logging_outputs if "scores" in log]
        if not batches:
            return
        multi = bool(batches[0]["multi_label"])
        for log in batches:
            metrics.log_custom(lambda: ScoresMeter(multi), SCORES_KEY, log["scores"], log["targets"], multi)
        keys = ("mAP", "auc", "d_prime") if multi else ("accuracy",)
        for key in keys:
            metrics.log_derived(key, _metric(key))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False  # score arrays are gathered, not summed
