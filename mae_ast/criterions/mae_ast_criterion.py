"""MAE-AST loss: MSE reconstruction + SSAST InfoNCE classification of masked patches."""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass


@dataclass
class MAE_AST_Criterion_Config(FairseqDataclass):
    reconstruction_weight: float = field(
        default=10.0, metadata={"help": "weight of the MSE reconstruction loss (lambda); 0 disables it"}
    )
    classification_weight: float = field(
        default=1.0, metadata={"help": "weight of the InfoNCE classification loss; 0 disables it"}
    )


def info_nce(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each masked patch's logit must pick its own target among its clip's: (loss, accuracy)."""
    scores = torch.matmul(logits, targets.transpose(-1, -2))  # (B, M, M)
    loss = -torch.diagonal(torch.log_softmax(scores, dim=-1), dim1=-2, dim2=-1).mean()
    correct = scores.argmax(dim=-1) == torch.arange(scores.shape[-1], device=scores.device)
    return loss, correct.float().mean()


def pretraining_loss(recon: torch.Tensor, classes: torch.Tensor, targets: torch.Tensor,
                     reconstruction_weight: float = 10.0, classification_weight: float = 1.0
                     ) -> tuple[torch.Tensor, dict]:
    """The weighted MSE + InfoNCE loss of the masked patches, and its parts (detached); a
    weight of 0 leaves its part out."""
    loss = recon.new_zeros(())
    log: dict = {}
    if reconstruction_weight > 0:
        loss_recon = F.mse_loss(recon, targets)
        loss = loss + reconstruction_weight * loss_recon
        log["loss_recon"] = loss_recon.detach()
    if classification_weight > 0:
        loss_nce, acc = info_nce(classes, targets)
        loss = loss + classification_weight * loss_nce
        log["loss_info_nce"] = loss_nce.detach()
        log["nce_acc"] = acc.detach()
    return loss, log


def skipped_batch_loss(model, sample: dict) -> tuple[torch.Tensor, int, dict]:
    """A batch whose every clip was unusable: a zero loss tied to every parameter (so
    data-parallel ranks still all-reduce the same tensors), reporting the skipped clips."""
    loss = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
    return loss, 0, {"loss": loss.detach(), "ntokens": 0, "nsentences": 0, "sample_size": 0, "nbatches": 0,
                     "mask_ratio": 0.0, "skipped_clips": sample.get("n_skipped", 0)}


@register_criterion("mae_ast", dataclass=MAE_AST_Criterion_Config)
class MAE_AST_Criterion(FairseqCriterion):
    def __init__(self, task, reconstruction_weight: float, classification_weight: float) -> None:
        super().__init__(task)
        if reconstruction_weight <= 0 and classification_weight <= 0:
            raise ValueError("criterion: reconstruction_weight or classification_weight must be > 0")
        self.reconstruction_weight = reconstruction_weight
        self.classification_weight = classification_weight

    def forward(self, model, sample: dict, reduce: bool = True):
        if "net_input" not in sample:
            return skipped_batch_loss(model, sample)
        net_output = model(**sample["net_input"])
        recon, classes = model.get_logits(net_output)
        targets = model.get_targets(net_output)

        loss, log = pretraining_loss(recon, classes, targets, self.reconstruction_weight,
                                     self.classification_weight)
        # Tensors, not .item(): no host sync here; fairseq reduces them when it logs.
        logging_output = {
            "loss": loss.detach(),
            "ntokens": targets.shape[1],
            "nsentences": sample["id"].numel(),
            "sample_size": 1,
            "nbatches": 1,
            "mask_ratio": net_output["mask_ratio"],
            "skipped_clips": sample.get("n_skipped", 0),
            **log,
        }
        return loss, 1, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        sample_size = max(total("sample_size"), 1)
        nbatches = max(total("nbatches"), 1)
        # As the original: losses per batch, in bits (÷ ln 2).
        metrics.log_scalar("loss", total("loss") / sample_size / math.log(2), sample_size, round=3)
        for key in ("loss_recon", "loss_info_nce"):
            if any(key in log for log in logging_outputs):
                metrics.log_scalar(key, total(key) / sample_size / math.log(2), sample_size, round=3)
        if any("nce_acc" in log for log in logging_outputs):
            metrics.log_scalar("nce_acc", total("nce_acc") / nbatches, nbatches, round=3)
        metrics.log_scalar("mask_ratio", total("mask_ratio") / nbatches, nbatches, round=3)
        metrics.log_scalar_sum("skipped_clips", total("skipped_clips"))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
