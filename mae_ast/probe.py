"""The standard linear probe (``mae-ast-probe``): frozen encoder features of each split, pooled
over each clip's time steps, and a standardised L2 logistic regression fitted on train, its C
(and layer) chosen on valid, scored on test with ``mae_ast.metrics``. What it runs and reports:
README, "Linear probe: the standard number".
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .data.classification_dataset import label_paths
from .data.datadir import SPLITS
from .data import identity
from .data.labels import LabelSet, read_label_descriptors, read_labels
from .data.manifest import Manifest, read_manifest
from .loading import encode_clips, open_checkpoint, ready, resolve_layers
from .metrics import classification_metrics, headline_metric
from .provenance import overlap_counts, overlap_report

logger = logging.getLogger(__name__)

# Inverse L2 strength on standardised features: half-decade steps from very strong
# (1e-3: close to the class prior) to weak (1e2: close to unregularised on these sizes).
C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-3, 2, 11))
POOLS = ("mean", "max")
# Of train, held out to choose C and layer when the valid split shares clips with test (ESC-50's
# folders: valid = test = the held-out fold), so that no choice is made on the scored clips.
HOLDOUT_FRACTION = 0.2
CACHE_VERSION = 3  # 3: the manifest's identity.Stamp saved beside the features


class ProbeError(ValueError):
    """Data the probe cannot use; the message names the file and says what to do."""


@dataclass
class ProbeConfig:
    layer: int | str | list[int] | None = None  # 1..L (-1 = last), a list, "all", or None for the last
    pool: str = "mean"  # how a clip's time steps become one vector
    grid: tuple[float, ...] = C_GRID  # the C values tried on valid
    multi_label: bool | None = None  # None: multi-label when some clip has several labels
    batch_size: int = 16  # clips per forward pass
    device: str | None = None  # default: CUDA when available
    cache: str | None = None  # folder for pooled features ({split}.{pool}.npz), reused while current
    max_iter: int = 5000  # lbfgs iterations per fit (weak regularisation needs many)


@dataclass
class Split:
    """One split's labels and pooled features of its readable clips."""

    name: str
    manifest_path: str
    manifest: Manifest
    labels: list[list[int]]  # per manifest entry
    features: np.ndarray | None = None  # (layers, kept clips, dim) float32
    kept: np.ndarray | None = None  # manifest indices of the rows of ``features``
    skipped: list[str] = field(default_factory=list)  # why each left-out clip was left out

    def targets(self, num_classes: int, multi_label: bool) -> np.ndarray:
        """(kept,) class indices, or a (kept, C) 0/1 matrix multi-label."""
        rows = [self.labels[i] for i in self.kept]
        if not multi_label:
            return np.array([r[0] for r in rows], dtype=np.int64)
        y = np.zeros((len(rows), num_classes), dtype=np.int64)
        for i, r in enumerate(rows):
            y[i, r] = 1
        return y


def read_splits(data: str, multi_label: bool | None) -> tuple[LabelSet, dict[str, Split], bool]:
    """Label set, the three splits (manifest + labels matched to its clips) and the label mode."""
    paths = {name: label_paths(data, name) for name in SPLITS}
    label_set = read_label_descriptors(paths["train"][2])
    splits = {}
    for name in SPLITS:
        manifest_path, label_path, _ = paths[name]
        for path in (manifest_path, label_path):
            if not os.path.isfile(path):
                raise ProbeError(f"{path}: not found; the probe fits on train, picks C on valid and scores test, "
                                 "so the data folder needs train, valid and test splits (mae-ast-prepare writes them)")
        manifest = read_manifest(manifest_path)
        if not manifest.paths:
            raise ProbeError(f"{manifest_path}: no clips; every split needs at least one")
        # Unless told, read as multi-label: the mode is decided over all splits below.
        splits[name] = Split(name, manifest_path, manifest, read_labels(label_path, label_set, manifest.entries,
                                                         multi_label is not False, manifest=manifest_path))
    several = any(len(r) > 1 for s in splits.values() for r in s.labels)
    mode = several if multi_label is None else multi_label
    check_train(splits["train"], label_set, mode, paths["train"][1])
    return label_set, splits, mode


def check_train(train: Split, label_set: LabelSet, multi_label: bool, path: str) -> None:
    """A classifier needs two classes in train (multi-label: one class both present and absent)."""
    present = {c for r in train.labels for c in r}
    if not multi_label and len(present) < 2:
        name = label_set.names[next(iter(present))]
        raise ProbeError(f"{path}: every train clip has class {name!r}; a classifier needs at least two "
                         "classes in train")
    if multi_label and not any(0 < sum(c in r for r in train.labels) < len(train.labels) for c in present):
        raise ProbeError(f"{path}: no class is both present and absent among the train clips; nothing to learn")


def pool_states(states: list[torch.Tensor], pad: torch.Tensor, pool: str) -> torch.Tensor:
    """(layers, B, dim): each layer's (B, T, dim) states pooled over the valid steps (pad: True = padding)."""
    h = torch.stack(states)  # (L, B, T, D)
    valid = (~pad)[None, :, :, None]
    if pool == "mean":
        return (h * valid).sum(2) / valid.sum(2).clamp(min=1)
    return h.masked_fill(~valid, float("-inf")).amax(2)


def extract_split(model, split: Split, pool: str, batch_size: int) -> None:
    """Fill ``split.features`` / ``kept`` / ``skipped``; clips batched by length, so little is padded."""
    order = np.argsort(np.asarray(split.manifest.sizes), kind="stable")
    rows: dict[int, np.ndarray] = {}
    for kept, out, bad in encode_clips(model, ((int(i), split.manifest.paths[i]) for i in order), batch_size):
        split.skipped += [str(err) for err in bad]
        if out is not None:
            pooled = pool_states(out["hidden_states"], out["padding_mask"], pool).float().cpu().numpy()
            rows.update({i: pooled[:, j] for j, i in enumerate(kept)})
    if not rows:
        raise ProbeError(f"{split.manifest.root}: no readable clip in {split.name} ({len(split.skipped)} skipped: "
                         f"{split.skipped[0] if split.skipped else ''})")
    split.kept = np.array(sorted(rows), dtype=np.int64)
    split.features = np.stack([rows[i] for i in split.kept], axis=1)


def fingerprint(checkpoint: str, pool: str) -> str:
    """What cached features depend on besides their clips: the checkpoint file (size, sampled
    bytes, mtime) and the pooling. Labels are not in it: they are read fresh. The clips are the
    cache's ``identity.Stamp``."""
    if os.path.isdir(checkpoint):  # an exported folder: its weights file
        checkpoint = os.path.join(checkpoint, "model.safetensors")
    return json.dumps({"version": CACHE_VERSION, "checkpoint": os.path.realpath(checkpoint),
                       "checkpoint_key": str(identity.content_key(checkpoint)),
                       "checkpoint_mtime_ns": os.stat(checkpoint).st_mtime_ns, "pool": pool}, sort_keys=True)


def load_cached(path: str, key: str, split: Split) -> bool:
    """Fill ``split`` from the cache file when it was written for ``key`` and its ``Stamp`` is
    current (a clip whose file is gone since keeps its cached features); False otherwise."""
    if not os.path.isfile(path):
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            stamp = identity.Stamp.read(f)
            stale = ("written for another checkpoint or pooling" if str(f["key"]) != key else
                     stamp.manifest_change(split.manifest_path)
                     or stamp.clips_change(split.manifest.paths, split.manifest.lines, missing_ok=True))
            if stale:
                logger.warning(f"{path}: {stale}; recomputing")
                return False
            split.features, split.kept, split.skipped = f["features"], f["kept"], list(f["skipped"])
    except (OSError, KeyError, ValueError) as err:
        logger.warning(f"{path}: unreadable or older feature cache ({err}); recomputing")
        return False
    return True


def features(model, checkpoint: str, split: Split, cfg: ProbeConfig) -> None:
    """``split``'s pooled features: from ``cfg.cache`` when current, else extracted (and cached)."""
    if not cfg.cache:
        return extract_split(model, split, cfg.pool, cfg.batch_size)
    path = os.path.join(cfg.cache, f"{split.name}.{cfg.pool}.npz")
    key = fingerprint(checkpoint, cfg.pool)
    if load_cached(path, key, split):
        return
    # Stamped before reading: a file rewritten while it is read makes the next run recompute.
    stamp = identity.Stamp.of(split.manifest_path, split.manifest.paths)
    extract_split(model, split, cfg.pool, cfg.batch_size)
    os.makedirs(os.path.abspath(cfg.cache), exist_ok=True)
    tmp = path + ".tmp.npz"  # written whole, then renamed: an interrupted run leaves no half file
    np.savez(tmp, key=np.array(key), features=split.features, kept=split.kept,
             skipped=np.array(split.skipped, dtype=str), **stamp.arrays())
    os.replace(tmp, path)


def class_scores(clf, x: np.ndarray, num_classes: int, multi_label: bool) -> np.ndarray:
    """(N, C) probabilities over every class of the label set; a class absent from train scores 0."""
    proba = clf.predict_proba(x)
    if multi_label:
        return proba
    scores = np.zeros((len(x), num_classes))
    scores[:, clf[-1].classes_] = proba
    return scores


def log_loss(scores: np.ndarray, y: np.ndarray, multi_label: bool) -> float:
    """Mean cross-entropy (binary, averaged over classes, for multi-label): the tie-break."""
    p = np.clip(scores, 1e-12, 1 - 1e-12)
    if multi_label:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


@dataclass
class Fit:
    C: float
    valid: dict  # classification_metrics on valid
    valid_log_loss: float
    by_C: list[dict]  # {"C", metric, "log_loss"} per grid value
    clf: object  # fitted Pipeline(StandardScaler, head)


def _rank(valid_metric: float, valid_log_loss: float) -> tuple[float, float]:
    """The probe's choice rule, of C and of layer: the best valid metric (nan last), then the
    lower valid log-loss, so a flat stretch picks the best-calibrated fit, not the first one."""
    return np.nan_to_num(valid_metric, nan=-1.0), -valid_log_loss


def fit_head(x: np.ndarray, y: np.ndarray, C: float, multi_label: bool, max_iter: int):
    """The L2 logistic regression at ``C`` on standardised features ``x``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    # A cold start per C: warm starts stop elsewhere at weak regularisation (near-separable
    # data), which moved valid accuracy by 0.01 and so the chosen C.
    head = LogisticRegression(C=C, max_iter=max_iter)
    head = OneVsRestClassifier(head) if multi_label else head
    with warnings.catch_warnings():
        # Slow convergence at weak regularisation: the valid score says whether it mattered.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
        return head.fit(x, y)


def refit(x_train: np.ndarray, y_train: np.ndarray, fit: Fit, multi_label: bool, cfg: ProbeConfig) -> Fit:
    """``fit``'s C refitted on all of ``x_train`` (the selection saw part of it)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    head = fit_head(scaler.transform(x_train), y_train, fit.C, multi_label, cfg.max_iter)
    return replace(fit, clf=make_pipeline(scaler, head))


def holdout(y: np.ndarray, multi_label: bool) -> np.ndarray:
    """A seeded mask of ``HOLDOUT_FRACTION`` of the train rows, drawn per class when single-label (a
    class with one clip keeps it for fitting): the probe's valid when valid holds test clips."""
    rng = np.random.default_rng(0)
    out = np.zeros(len(y), dtype=bool)
    groups = [np.arange(len(y))] if multi_label else [np.flatnonzero(y == c) for c in np.unique(y)]
    for rows in groups:
        if len(rows) > 1:
            out[rng.choice(rows, max(1, round(HOLDOUT_FRACTION * len(rows))), replace=False)] = True
    return out


def fit_layer(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
              num_classes: int, multi_label: bool, cfg: ProbeConfig) -> Fit:
    """The fit of ``cfg.grid``'s C on train that ``_rank`` picks on valid (the protocol: README)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    metric = headline_metric(multi_label)
    scaler = StandardScaler().fit(x_train)
    x_train = scaler.transform(x_train)
    best, by_C = None, []
    for C in sorted(cfg.grid):
        clf = make_pipeline(scaler, fit_head(x_train, y_train, C, multi_label, cfg.max_iter))
        scores = class_scores(clf, x_valid, num_classes, multi_label)
        valid = classification_metrics(scores, y_valid, multi_label)
        loss = log_loss(scores, y_valid, multi_label)
        by_C.append({"C": C, metric: valid[metric], "log_loss": loss})
        if best is None or _rank(valid[metric], loss) > best[0]:
            best = (_rank(valid[metric], loss), Fit(C, valid, loss, by_C, clf))
    return best[1]


def shared_clips(keys: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> dict:
    """``overlap_counts`` of clips ``keys`` among clips ``other``, by real path or content."""
    return overlap_counts(*keys, np.sort(other[0]), np.sort(other[1]))[1]


def layers_to_fit(layer: int | str | list[int] | None, depth: int) -> list[int]:
    """Each layer fitted (``loading.resolve_layers``' rule; None: the last)."""
    try:
        return resolve_layers(-1 if layer is None else layer, depth)
    except ValueError as err:
        raise ProbeError(f"--layer: {err}") from None


def run_probe(checkpoint: str, data: str, cfg: ProbeConfig | None = None) -> dict:
    """The probe's result (see the module docstring); JSON-ready apart from non-finite floats."""
    cfg = cfg or ProbeConfig()
    if cfg.pool not in POOLS:
        raise ProbeError(f"pool {cfg.pool!r}: use one of {', '.join(POOLS)}")
    label_set, splits, multi_label = read_splits(data, cfg.multi_label)
    opened = open_checkpoint(checkpoint)
    model = ready(opened.encoder, cfg.device)
    layers = layers_to_fit(cfg.layer, len(model.encoder.layers))
    for split in splits.values():
        features(model, checkpoint, split, cfg)
        if split.skipped:
            logger.warning(f"{split.name}: {len(split.skipped)} clip(s) left out, first: {split.skipped[0]}")
    train, valid, test = (splits[s] for s in SPLITS)
    # (path_keys, content_keys) of each split's kept clips
    keys = {name: tuple(k[s.kept] for k in identity.manifest_keys(s.manifest_path, s.manifest.paths))
            for name, s in splits.items()}
    C = label_set.num_classes
    y = {s.name: s.targets(C, multi_label) for s in splits.values()}
    if not multi_label and len(set(y["train"].tolist())) < 2:
        raise ProbeError(f"{label_paths(data, 'train')[1]}: the readable train clips hold one class only; "
                         "a classifier needs at least two")
    metric = headline_metric(multi_label)
    valid_in_test = shared_clips(keys["valid"], keys["test"])["either"]
    held = None  # train rows C and the layer are chosen on, when valid cannot be (None: valid)
    if valid_in_test:
        held = holdout(y["train"], multi_label)
        if not held.any():
            raise ProbeError(f"{label_paths(data, 'valid')[0]}: {valid_in_test} valid clips are test clips, and "
                             "train is too small to hold out clips for choosing C; give valid its own clips")
        logger.warning(f"valid shares {valid_in_test} clips with test: C and the layer are chosen on "
                       f"{held.sum()} train clips held out instead, then refitted on all of train")
    y_select = y["valid"] if held is None else y["train"][held]
    fits = {}
    for layer in layers:
        x = train.features[layer - 1]
        if held is None:
            fits[layer] = fit_layer(x, y["train"], valid.features[layer - 1], y_select, C, multi_label, cfg)
        else:
            fits[layer] = fit_layer(x[~held], y["train"][~held], x[held], y_select, C, multi_label, cfg)
        logger.info(f"layer {layer}: C={fits[layer].C:g}, valid {fits[layer].valid}")
    chosen = max(layers, key=lambda n: (*_rank(fits[n].valid[metric], fits[n].valid_log_loss), -n))  # ties: lower layer
    fit = fits[chosen]
    if held is not None:
        fit = refit(train.features[chosen - 1], y["train"], fit, multi_label, cfg)
    test_scores = class_scores(fit.clf, test.features[chosen - 1], C, multi_label)
    on = (f"valid {metric}" if held is None else
          f"{metric} on a seeded {HOLDOUT_FRACTION:.0%} of train held out (valid shares {valid_in_test} clips "
          "with test), refitted on all of train")
    if len(layers) == 1:
        layer_choice = "the last (default)" if cfg.layer is None else "given"
    else:
        named = f"1..{len(layers)}" if cfg.layer == "all" else ", ".join(map(str, layers))
        layer_choice = f"best {'valid' if held is None else 'held-out train'} {metric} of layers {named}"
    return {
        "checkpoint": checkpoint,
        "data": data,
        "multi_label": multi_label,
        "metric": metric,
        "pool": cfg.pool,
        "layer": chosen,
        "layer_choice": layer_choice,
        "C": fit.C,
        "C_grid": list(cfg.grid),
        "selection": f"C (and layer) with the best {on}; ties to the lower log-loss",
        "selection_split": "valid" if held is None else "train holdout",
        "valid": fit.valid,
        "test": classification_metrics(test_scores, y["test"], multi_label),
        "valid_by_C": fit.by_C,
        "layers": [{"layer": n, "C": fits[n].C, f"valid_{metric}": fits[n].valid[metric]} for n in layers],
        "n_clips": {s.name: int(len(s.kept)) for s in splits.values()} | {"selection": len(y_select)},
        "skipped_clips": {s.name: len(s.skipped) for s in splits.values()},
        "dim": int(train.features.shape[-1]),
        # The test split's report as mae-ast-evaluate writes it, plus test clips in the probe's own train split.
        "provenance": overlap_report(opened.state, opened.path, [], keys["test"])
        | {"probe_train_overlap": shared_clips(keys["test"], keys["train"])},
    }


__all__ = ["C_GRID", "POOLS", "ProbeConfig", "ProbeError", "run_probe", "fit_layer", "pool_states", "read_splits"]
