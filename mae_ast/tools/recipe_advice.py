"""Advice on a fine-tuning recipe for a data folder (``mae-ast-validate DATA --recipe``):
settings that train without an error but do something other than asked (the list: README,
'Advice on a recipe, before training'). Run lengths are estimates from the manifest's line
count and ``dataset.batch_size``: clips a reader skips make epochs slightly shorter.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Optional

from ..data.features import FeatureSpec
from ..tasks.validation_notes import read_split, validation_notes
from omegaconf import OmegaConf

# Below this many validation clips, one clip is worth more than 1 point of accuracy.
SMALL_VALID = 100
# A warmup over more than this share of the run leaves little of it at the full lr.
MAX_WARMUP_SHARE = 0.5


@dataclass
class RunPlan:
    """What fairseq will run: updates per epoch and the update it stops at."""

    updates_per_epoch: int
    total_updates: Optional[int]  # None: neither max_epoch nor max_update stops it
    epoch_limited: bool  # max_epoch stops the run before max_update


def plan_run(clips: int, batch_size: int, update_freq: int, world_size: int, max_epoch: int,
             max_update: int) -> RunPlan:
    """Updates per epoch (the last partial batch counts) and where the run stops."""
    per_epoch = max(math.ceil(math.ceil(clips / batch_size) / (update_freq * world_size)), 1)
    by_epoch = max_epoch * per_epoch if max_epoch else None
    if by_epoch is not None and (not max_update or by_epoch < max_update):
        return RunPlan(per_epoch, by_epoch, epoch_limited=bool(max_update))
    return RunPlan(per_epoch, max_update or None, epoch_limited=False)


def warmups(cfg: Any) -> dict[str, int]:
    """Warmup updates of each lr schedule (the composite optimizer's groups, or the top-level one)."""
    groups = cfg.optimizer.get("groups") if cfg.optimizer.get("_name") == "composite" else None
    schedulers = {f"optimizer.groups.{name}.lr_scheduler": g.get("lr_scheduler") for name, g in (groups or {}).items()}
    schedulers = schedulers or {"lr_scheduler": cfg.get("lr_scheduler")}
    return {where: int(s.get("warmup_updates") or 0) for where, s in schedulers.items() if s is not None}


def run_warnings(cfg: Any, train_clips: Optional[int], valid_clips: Optional[int]) -> list[str]:
    """The warnings for this config and these split sizes (plain data in, text out)."""
    out = []
    opt, ds = cfg.optimization, cfg.dataset
    if train_clips and ds.get("batch_size"):
        plan = plan_run(train_clips, int(ds.batch_size), int(opt.update_freq[0]),
                        int(cfg.distributed_training.distributed_world_size), int(opt.max_epoch or 0),
                        int(opt.max_update or 0))
        if plan.epoch_limited:
            out.append(f"optimization.max_epoch={opt.max_epoch} stops this run at about {plan.total_updates} "
                       f"updates ({plan.updates_per_epoch} an epoch on {train_clips} train clips), before "
                       f"optimization.max_update={opt.max_update}: set optimization.max_epoch=0 to stop on "
                       "max_update alone")
        for where, warmup in warmups(cfg).items():
            if plan.total_updates and warmup > MAX_WARMUP_SHARE * plan.total_updates:
                reached = min(warmup, plan.total_updates) / warmup
                out.append(f"{where}.warmup_updates={warmup} is {warmup / plan.total_updates:.0%} of this run's "
                           f"about {plan.total_updates} updates ({plan.updates_per_epoch} an epoch): the lr "
                           f"peaks at {reached:.0%} of optimization.lr{' at the very end' if reached < 1 else ''}. "
                           "The recipes' warmups are in epochs of their datasets; scale them to yours "
                           "(see the recipe's comments)")
    if valid_clips is not None and valid_clips < SMALL_VALID and not ds.get("disable_validation"):
        out.append(f"the valid split has {valid_clips} clips: one clip is {1 / max(valid_clips, 1):.0%} of "
                   "accuracy, so checkpoint_best.pt is picked largely by noise; evaluate checkpoint_last.pt "
                   "(or a larger valid split)")
    return out


def load_recipe(path: str, overrides: list[str]) -> tuple[Any, Any]:
    """(fairseq's config, hydra's section) of a recipe file with ``key=value`` overrides,
    on fairseq's defaults for what the recipe leaves out."""
    from fairseq.dataclass.configs import FairseqConfig

    recipe = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    hydra = recipe.pop("hydra", None) or OmegaConf.create({})
    recipe.pop("defaults", None)
    return OmegaConf.merge(OmegaConf.structured(FairseqConfig), recipe), hydra


def nested_save_dir(save_dir: str, run_dir: Optional[str]) -> Optional[str]:
    """The advice when a relative ``checkpoint.save_dir`` repeats ``hydra.run.dir``."""
    if os.path.isabs(save_dir) or not run_dir or run_dir == "???" or \
            os.path.abspath(save_dir) != os.path.abspath(run_dir):
        return None
    return (f"checkpoint.save_dir={save_dir} is relative to the run folder (fairseq's rule), so checkpoints go "
            f"to {os.path.join(run_dir, save_dir)}; leave checkpoint.save_dir out to save in "
            f"{os.path.join(run_dir, 'checkpoints')}, or give an absolute path")


def recipe_advice(cfg: Any, hydra: Any, data: str, spec: Optional[FeatureSpec] = None) -> list[str]:
    """Every piece of advice on fine-tuning ``cfg`` (``load_recipe``) on the folder ``data``;
    the last one says what validation scores. Empty for a recipe of another task."""
    if cfg.task.get("_name") != "mae_ast_classification":
        return []
    valid = cfg.dataset.get("valid_subset", "valid").split(",")[0]
    clips = [None if m is None else len(m) for m in (read_split(data, "train"), read_split(data, valid))]
    out = run_warnings(cfg, *clips)  # entries as training reads them; None: it cannot
    out.append(nested_save_dir(str(cfg.checkpoint.save_dir), OmegaConf.select(hydra, "run.dir")))
    out += [note for _, note in validation_notes(cfg, data, spec)]  # also said when the run starts
    return [line for line in out if line]
