"""Checks a run makes when its model is built, before any data is read: each would otherwise
end in a crash after an epoch, or in a number that silently means something else. Advice
that prevents no crash is ``mae-ast-validate --recipe``'s (``mae_ast.tools.recipe_advice``).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from .. import provenance
from ..checkpoints import CLASSIFIER, PRETRAINING, CheckpointError, as_dict, config_section, read_checkpoint
from ..data.features import FeatureSpec
from ..metrics import SPLIT_METRICS, headline_metric

logger = logging.getLogger(__name__)


class RunConfigError(ValueError):
    """A fine-tuning setting that cannot work; the message says which and what to set."""


def root_config(task_cfg: Any) -> Any | None:
    """fairseq's whole config above the task's node (the link that lets ``II("common.seed")``
    resolve), or None for a task config on its own."""
    if not OmegaConf.is_config(task_cfg):
        return None
    try:
        parent = OmegaConf.select(task_cfg, "..")
    except ConfigKeyError:  # a node without a parent
        return None
    return parent if parent is not None and "checkpoint" in parent else None


def launch_folder() -> str | None:
    """The folder the command was started in, when hydra left it for ``hydra.run.dir``: from
    hydra, or in the ranks fairseq spawns (no hydra there) from ``.hydra/hydra.yaml``."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_original_cwd
    except ImportError:
        return None
    if HydraConfig.initialized():
        return get_original_cwd()
    record = os.path.join(".hydra", "hydra.yaml")
    runtime = OmegaConf.select(OmegaConf.load(record), "hydra.runtime") if os.path.isfile(record) else None
    here = runtime and os.path.realpath(str(runtime.get("output_dir"))) == os.path.realpath(os.getcwd())
    return runtime.get("cwd") if here else None


def launch_path(path: str | None) -> str | None:
    """``path`` resolved against the launch folder when relative."""
    origin = None if not path or os.path.isabs(path) else launch_folder()
    return os.path.normpath(os.path.join(origin, path)) if origin else path


def check_settings(task_cfg: Any, spec: FeatureSpec, min_frames: int) -> None:
    """Ranges that depend on the model's input: clip length, SpecAugment widths, mixup."""
    problems = []
    if task_cfg.target_length < min_frames:
        problems.append(f"task.target_length={task_cfg.target_length} is shorter than one patch "
                        f"({min_frames} frames): use >= {min_frames}")
    if not 0 <= task_cfg.freqm <= spec.width:
        problems.append(f"task.freqm={task_cfg.freqm} must lie in 0..{spec.width} (the input has {spec.width} "
                        "feature columns)")
    if not 0 <= task_cfg.timem <= task_cfg.target_length:
        problems.append(f"task.timem={task_cfg.timem} must lie in 0..{task_cfg.target_length} "
                        "(task.target_length frames)")
    if not 0 <= task_cfg.mixup <= 1:
        problems.append(f"task.mixup={task_cfg.mixup} is a probability: use 0..1")
    if task_cfg.mixup > 0 and task_cfg.mixup_alpha <= 0:
        problems.append(f"task.mixup_alpha={task_cfg.mixup_alpha} must be > 0 (Beta(alpha, alpha))")
    if problems:
        raise RunConfigError("; ".join(problems))


def check_metric(root: Any, multi_label: bool) -> None:
    """A best-checkpoint metric this label mode never logs is a ``KeyError`` after an epoch."""
    metric = str(root.checkpoint.best_checkpoint_metric)
    allowed = ("loss", *SPLIT_METRICS[bool(multi_label)])
    if metric not in allowed:
        mode = "multi-label (task.multi_label=true)" if multi_label else "single-label"
        raise RunConfigError(
            f"checkpoint.best_checkpoint_metric={metric} is not logged by {mode} validation, which logs "
            f"{', '.join(allowed)}: set checkpoint.best_checkpoint_metric={headline_metric(bool(multi_label))}")
    if bool(root.checkpoint.maximize_best_checkpoint_metric) != (metric != "loss"):
        raise RunConfigError(f"checkpoint.best_checkpoint_metric={metric} is better when "
                             f"{'lower' if metric == 'loss' else 'higher'}: set "
                             f"checkpoint.maximize_best_checkpoint_metric={str(metric != 'loss').lower()}")


def restore_path(checkpoint_cfg: Any) -> str | None:
    """The file fairseq's ``load_checkpoint`` will restore (its own rule), if it exists."""
    restore = str(checkpoint_cfg.restore_file)
    suffix = str(getattr(checkpoint_cfg, "checkpoint_suffix", "") or "")
    if restore == "checkpoint_last.pt":
        path = os.path.join(str(checkpoint_cfg.save_dir), f"checkpoint_last{suffix}.pt")
        if not os.path.exists(path):  # first launch: fairseq's continue_once, then finetune_from_model
            first = getattr(checkpoint_cfg, "continue_once", None) or getattr(
                checkpoint_cfg, "finetune_from_model", None)
            path = str(first) if first else path
    else:
        path = restore.replace(".pt", suffix + ".pt") if suffix else restore
    return path if os.path.exists(path) else None


def check_resume(root: Any, class_names: list[str], multi_label: bool, head_norm: str | None = None,
                 built: Any = None, record: dict | None = None) -> None:
    """Refuse to resume a checkpoint that cannot be read, or whose classifier has other classes,
    head, data (``record``) or shape (``built``): fairseq would carry its head, best score and
    optimizer state onto this run (or fail on mismatched keys)."""
    path = restore_path(root.checkpoint)
    check_other_checkpoints(root.checkpoint, path)
    if path is None:
        return
    try:  # mmap: the weights stay on disk; only the config is looked at
        state = read_checkpoint(path, kinds=(CLASSIFIER,), mmap=True)
    except CheckpointError as err:
        best = os.path.join(os.path.dirname(path), "checkpoint_best.pt")
        raise RunConfigError(f"this run would resume from {path}, which cannot be used: {err}. Ways out: resume "
                             f"from the best checkpoint (cp {best} {path}), or start afresh in a new "
                             "checkpoint.save_dir") from None
    model = config_section(state, "model")
    theirs, their_multi = model.get("class_names"), model.get("multi_label")
    if theirs is None:
        raise RunConfigError(f"{path}: this run would resume from it, but its config names no classes; "
                             "use a new checkpoint.save_dir")
    if list(theirs) != list(class_names) or bool(their_multi) != bool(multi_label):
        raise RunConfigError(
            f"{path}: this run would resume a classifier trained on other classes: "
            f"{_difference(list(theirs), class_names)}"
            f"{'' if bool(their_multi) == bool(multi_label) else f'; multi_label {their_multi} vs {multi_label}'}. "
            "Its head, best score and optimizer state would be carried onto these labels. Use a new "
            "checkpoint.save_dir (or the data folder it was trained on)")
    their_norm = model.get("head_norm")  # every classifier this code writes records the resolved one
    if None not in (head_norm, their_norm) and their_norm != head_norm:
        raise RunConfigError(f"{path}: this run would resume a classifier whose head normalises with "
                             f"{their_norm}, but this run builds {head_norm}: set model.head_norm={their_norm} "
                             "to continue it, or use a new checkpoint.save_dir")
    if built is not None:
        check_shape(path, state, built, dict(built.encoder_cfg), model.get("encoder") or {}, "model.encoder.")
    if record is not None:
        check_same_data(path, state, record)


def check_pretraining_resume(root: Any, model: Any, record: dict) -> None:
    """``check_resume`` for pretraining: shape and data; an unreadable file is fairseq's to report."""
    path = restore_path(root.checkpoint)
    check_other_checkpoints(root.checkpoint, path)
    if path is None:
        return
    try:
        state = read_checkpoint(path, kinds=(PRETRAINING,), mmap=True)
    except CheckpointError:
        return
    check_shape(path, state, model, as_dict(root.model), config_section(state, "model"), "model.")
    check_same_data(path, state, record)


def check_other_checkpoints(checkpoint_cfg: Any, resumed: str | None) -> None:
    """Refuse a save dir holding ``checkpoint*.pt`` files when this run resumes none of them
    (``resumed``, ``restore_path``'s file, is not in it): they are another run's (a resumed
    file's siblings are its own run's), and fairseq would overwrite them (its first validation
    replaces ``checkpoint_best.pt`` whatever that scored)."""
    if getattr(checkpoint_cfg, "no_save", False):  # nothing will be written
        return
    save_dir = os.path.realpath(str(checkpoint_cfg.save_dir))
    if resumed is not None and os.path.realpath(os.path.dirname(os.path.abspath(resumed))) == save_dir:
        return
    found = sorted(os.path.basename(f) for f in glob.glob(os.path.join(glob.escape(save_dir), "checkpoint*.pt")))
    if not found:
        return
    names = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    start = f"starts from {resumed}" if resumed else "starts afresh (there is no checkpoint_last.pt to resume)"
    raise RunConfigError(f"{save_dir}: this run would overwrite another run's checkpoints ({names}): it {start}, "
                         "resuming none of them, and its saves would replace them (checkpoint_best.pt whatever it "
                         "scored). Use a new checkpoint.save_dir (and hydra.run.dir) for this run, or delete them")


# Config fields that set parameter shapes, named in the message when they differ.
SHAPE_FIELDS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
                "decoder_layers", "decoder_embed_dim", "ast_kernel_size_time", "ast_kernel_size_chan",
                "ast_kernel_stride_time", "ast_kernel_stride_chan", "enc_sine_pos", "dec_sine_pos", "max_token_length")


def check_shape(path: str, state: dict, model: Any, ours: dict, theirs: dict, prefix: str) -> None:
    """Refuse weights that do not fit this run's model, naming the settings that differ
    (fairseq would stop later with "Unexpected key(s)" and no hint)."""
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    other = {k: tuple(v.shape) for k, v in state["model"].items()}
    if mine == other:
        return
    fields = [f"{prefix}{k}: {theirs.get(k)} in the checkpoint, {ours.get(k)} in this run"
              for k in SHAPE_FIELDS if k in theirs and k in ours and theirs[k] != ours[k]]
    missing, unexpected = sorted(set(mine) - set(other)), sorted(set(other) - set(mine))
    resized = [k for k in sorted(set(mine) & set(other)) if mine[k] != other[k]]
    keys = "; ".join(x for x in (
        f"{len(unexpected)} weights only in the checkpoint (e.g. {unexpected[0]})" if unexpected else "",
        f"{len(missing)} only in this model (e.g. {missing[0]})" if missing else "",
        f"{len(resized)} of another shape (e.g. {resized[0]}: {other[resized[0]]} vs {mine[resized[0]]})"
        if resized else "") if x)
    settings = f"{'; '.join(fields)}; " if fields else ""
    raise RunConfigError(f"{path}: this run would resume a model of another shape: {settings}{keys}. "
                         "Set the checkpoint's values to continue it, or use a new checkpoint.save_dir "
                         "(a new hydra.run.dir) for this model")


def check_same_data(path: str, state: dict, record: dict) -> None:
    """Refuse to resume a checkpoint trained on other data (e.g. one run folder reused for
    another ESC-50 fold: evaluation would score a model trained on its own test clips)."""
    theirs = provenance._record_state(state)
    if theirs is None:
        logger.warning(f"{path}: this run resumes a checkpoint without a provenance record (older code): "
                       "cannot check that it was trained on the same data")
        return
    problems = provenance.same_data(theirs, record)
    if problems:
        raise RunConfigError(f"{path}: this run would resume a checkpoint trained on other data: "
                             f"{'; '.join(problems)}. Use a new checkpoint.save_dir (and hydra.run.dir) for "
                             "this data, or point task.data at the data it was trained on")


def _difference(theirs: list[str], ours: list[str]) -> str:
    if sorted(theirs) == sorted(ours):
        first = next(i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b)
        return f"the same {len(ours)} names in another order (class {first} was {theirs[first]!r}, now {ours[first]!r})"
    gone, new = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    return (f"{len(theirs)} classes then, {len(ours)} now"
            + (f"; no longer present: {gone[:5]}" if gone else "") + (f"; new: {new[:5]}" if new else ""))


LOCK_NAME = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    return True


def lock_run_folder(root: Any) -> str | None:
    """Hold ``<save_dir>/run.lock`` (host and PID) for this run's life, so two runs in one
    folder do not both write its checkpoints (both exiting 0). A dead local holder's lock is
    taken over. Rank 0 only (the ranks share the folder). Returns the lock path."""
    import atexit
    import socket

    if int(getattr(root.distributed_training, "distributed_rank", 0) or 0) != 0:
        return None
    save_dir = os.path.abspath(str(root.checkpoint.save_dir))
    os.makedirs(save_dir, exist_ok=True)
    path, host, me = os.path.join(save_dir, LOCK_NAME), socket.gethostname(), os.getpid()
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                with open(path) as f:
                    their_host, their_pid = f.read().split()[:2]
                their_pid = int(their_pid)
            except (OSError, ValueError):
                their_host, their_pid = host, -1  # unreadable or half-written: treat as stale
            if their_host == host and their_pid == me:
                return path  # this process already holds it (the task is built twice)
            if their_host != host:
                raise RunConfigError(f"{save_dir} is in use by a run on {their_host} (PID {their_pid}, {path}): use "
                                     "another checkpoint.save_dir, or delete the lock if that run has ended") from None
            if their_pid > 0 and _alive(their_pid):
                raise RunConfigError(f"{save_dir} is in use by a live run (PID {their_pid}, {path}): two runs in "
                                     "one folder overwrite each other's checkpoints; use another "
                                     "checkpoint.save_dir (and hydra.run.dir), or wait for it to end") from None
            logger.warning(f"{path}: left by PID {their_pid}, which has ended; taking the run folder over")
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    with os.fdopen(fd, "w") as f:
        f.write(f"{host} {me}\n")

    def release() -> None:
        with contextlib.suppress(OSError), open(path) as f:
            if f.read().split()[1:2] == [str(me)]:
                os.remove(path)

    atexit.register(release)
    return path
