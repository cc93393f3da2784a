"""``mae_ast_classification``: cross-entropy (single-label) or BCE (multi-label) on ``(B, C)``
float targets. Validation metrics are the whole split's (mAP does not average over batches):
``reduce_metrics`` concatenates every batch's scores and derives them from all.
"""

from dataclasses import dataclass, field

import torch
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from ..models.class_scores import LOSSES, per_clip_loss, probabilities, resolve_loss
from ..metrics import SPLIT_METRICS, classification_metrics
from .mae_ast_criterion import skipped_batch_loss

LOSS_CHOICES = ChoiceEnum(["auto", *LOSSES])
# Hidden meters (fairseq prints no key starting with "_") of fairseq's own ConcatTensorMeter,
# which a resumed run's checkpoint rebuilds by its class name; the split's metric is derived.
SCORES_KEY, TARGETS_KEY = "_scores", "_targets"


@dataclass
class Classification_Criterion_Config(FairseqDataclass):
    loss: LOSS_CHOICES = field(default="auto", metadata={
        "help": "auto: ce for single-label, bce for multi-label; bce on single-label is SSAST's Speech "
                "Commands recipe"})


def reset_scores() -> None:
    """Forget earlier validation runs' scores: fairseq's persistent "valid" aggregator would
    otherwise grow by a split each run."""
    for key in (SCORES_KEY, TARGETS_KEY):
        metrics.reset_meter("valid", key)
    meter = metrics.get_meter("valid", SCORES_KEY)
    if meter is not None:
        meter.split_metrics = None  # nor the metrics cached from them


def _metric(key: str, multi_label: bool):
    def value(meters) -> float:
        meter = meters[SCORES_KEY]
        if meter.tensor is None:
            return float("nan")
        # Computed once per score tensor (a new one with every batch) for all derived keys.
        cached = getattr(meter, "split_metrics", None)
        if cached is None or cached[0] is not meter.tensor:
            found = classification_metrics(meter.tensor.numpy(), meters[TARGETS_KEY].tensor.numpy(), multi_label)
            meter.split_metrics = cached = (meter.tensor, found)
        return cached[1].get(key, float("nan"))

    return value


@register_criterion("mae_ast_classification", dataclass=Classification_Criterion_Config)
class Classification_Criterion(FairseqCriterion):
    def __init__(self, task, loss: str = "auto") -> None:
        super().__init__(task)
        self.multi_label = bool(task.cfg.multi_label)
        self.loss = resolve_loss(loss, self.multi_label)

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Summed over clips (fairseq divides by sample_size = clips)."""
        return per_clip_loss(logits, target, self.loss).sum()

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
            log["scores"] = probabilities(logits, self.multi_label).detach().cpu()
            log["targets"] = sample["target"].cpu()
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
            metrics.log_concat_tensor(SCORES_KEY, log["scores"])
            metrics.log_concat_tensor(TARGETS_KEY, log["targets"])
        for key in SPLIT_METRICS[multi]:
            metrics.log_derived(key, _metric(key, multi))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False  # score arrays are gathered, not summed
