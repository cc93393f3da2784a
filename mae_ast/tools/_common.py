"""What the command-line tools share: argument checks that refuse a bad value when parsed (exit 2),
before a checkpoint or any audio is read; the scoring tools' reports and exit codes. Output folders
are made only when the output is written, so a command refused later leaves no empty folder behind.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator

import torch

from ..data.datadir import find_audio
from ..data.manifest import read_manifest


def tool_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_batch_and_device(p: argparse.ArgumentParser, batch_size: int, what: str) -> None:
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=f"{what} per forward pass (default: {batch_size})")
    p.add_argument("--device", type=device_arg, default=None,
                   help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def add_window_args(p: argparse.ArgumentParser, crop: str) -> None:
    """``--crop`` (default ``crop``) and ``--hop`` of the scoring tools; ``check_scoring_args`` checks them."""
    p.add_argument("--crop", choices=["start", "windows"], default=crop,
                   help="a clip longer than the model's input: start = its first window, as validation in training "
                        "(the recipe's protocol); windows = every frame, in sliding windows aggregated over the "
                        f"file (default: {crop})")
    p.add_argument("--hop", type=positive_float, default=None,
                   help="with --crop windows: seconds between window starts, at most the model's input length "
                        "(default: half of it)")


def check_scoring_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.hop is not None and args.crop != "windows":
        p.error("--hop applies to --crop windows only")
    check_output(p, args.json, "--json")


def pool_map(fn: Callable, items: Iterable, workers: int, chunksize: int) -> Iterator:
    """``map(fn, items)`` in order, in ``workers`` processes when more than one."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with multiprocessing.Pool(workers) as pool:
        yield from pool.imap(fn, items, chunksize=chunksize)


def positive_int(text: str) -> int:
    """An ``int`` >= 1 (argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite ``float`` > 0 (argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def split_list(text: str) -> list[str]:
    """Comma-separated split names ("train, valid"; any fairseq split, as ``dataset.valid_subset``
    names them: dev_other is ``dev_other.tsv``), stripped, once each (argparse ``type``)."""
    names = [s.strip() for s in text.split(",")]
    if not all(names) or any("/" in s or s.endswith(".tsv") for s in names):
        raise argparse.ArgumentTypeError(f"{text!r}: give split names separated by commas (train,valid), "
                                         "not file names")
    return list(dict.fromkeys(names))


def check_splits(parser: argparse.ArgumentParser, data: str, splits: list[str]) -> None:
    """``parser.error`` (exit 2) unless ``data`` holds each split's ``{split}.tsv``: one named is never skipped."""
    if not os.path.isdir(data):
        parser.error(f"{data}: not a folder; give the data folder holding {{split}}.tsv")
    missing = [f"{s}.tsv" for s in splits if not os.path.isfile(os.path.join(data, f"{s}.tsv"))]
    if missing:
        have = ",".join(sorted(f[:-4] for f in os.listdir(data) if f.endswith(".tsv")))
        parser.error(f"{data}: no {', '.join(missing)}; write it first, or name only the splits the folder has"
                     + (f" (--splits {have})" if have else " (none)"))


def device_arg(text: str) -> str:
    """A torch device this machine has: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (argparse ``type``)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {count} CUDA device(s), "
                                             f"cuda:0..cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine; use --device cpu")
    elif device.type not in ("cpu", "mps"):
        raise argparse.ArgumentTypeError(f"{text}: unsupported device type {device.type!r}; use cpu or cuda")
    return text


def list_inputs(path: str) -> list[tuple[str, str]]:
    """(full path, relative output name with its extension) of each audio file that ``path``
    names: itself, the files under a folder, or a manifest's (.tsv) clips (``ManifestError``)."""
    if os.path.isdir(path):
        return [(os.path.join(path, rel), rel) for rel in find_audio(path)]
    if path.endswith(".tsv") and os.path.isfile(path):
        m = read_manifest(path)
        return [(p, inside_name(os.path.relpath(p, m.root))) for p in m.paths]
    return [(path, os.path.basename(path))]


def inside_name(rel: str) -> str:
    """An output name that stays under ``--out``: a manifest entry outside its root
    (``../_silence_/a.wav``, or an absolute path) keeps its path, each ``..`` written as
    ``_up_``, instead of escaping the output folder."""
    parts = os.path.normpath(rel).replace(os.sep, "/").split("/")
    return "/".join("_up_" if part == ".." else part for part in parts if part not in ("", "."))


def check_output(parser: argparse.ArgumentParser, path: str | None, option: str, folder: bool = False) -> None:
    """``parser.error`` (exit 2) unless the output file (or, with ``folder``, the output
    folder) ``path`` could be made: the nearest existing folder above it writable."""
    if path is None:
        return
    path = os.path.abspath(path)
    if folder and os.path.exists(path) and not os.path.isdir(path):
        parser.error(f"{option} {path}: is a file, not a folder")
    if not folder and os.path.isdir(path):
        parser.error(f"{option} {path}: is a folder; give a file name")
    existing = path if folder else os.path.dirname(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        parser.error(f"{option} {path}: {existing} is a file, so no folder can be made there")
    if not os.access(existing, os.W_OK) or (os.path.isfile(path) and not os.access(path, os.W_OK)):
        parser.error(f"{option} {path}: {existing} is not writable; choose another path")


def output_folder(path: str) -> str:
    """Make ``path``'s missing parent folders; returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def write_json(path: str, data: object) -> None:
    """Strict JSON (no NaN or Infinity: ``json_safe`` them first), parent folders made."""
    with open(output_folder(path), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")


def json_safe(value: object) -> object:
    """``value`` with every NaN or +-inf float, nested ones too, replaced by ``None`` (JSON null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def metric_text(value: object) -> str:
    """A metric as printed: 4 decimals, ``n/a`` for nan (a class or split it cannot score)."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def open_classifier(prog: str, checkpoint: str, device: str | None, hop_s: float | None):
    """(classifier, hop in frames) for the scoring tools, or None after a one-line message
    on stderr (the caller exits 2): a checkpoint that cannot be used or a hop it refuses."""
    from ..checkpoints import CheckpointError
    from ..classifier import load_classifier

    try:
        clf = load_classifier(checkpoint, device=device)
    except CheckpointError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return None
    try:
        return clf, clf.hop_in_frames(hop_s)
    except ValueError as err:
        print(f"{prog}: --hop {hop_s:g}: {err}", file=sys.stderr)
        return None


def provenance_notes(report: dict, split: str) -> tuple[list[str], list[str]]:
    """(warnings, notes) of an ``overlap_report``: a leak is a warning; a checkpoint selected
    on the scored clips, and a checkpoint without a record, are notes."""
    warnings, out = [], []
    n = report["n_scored_clips"]
    if report.get("repeated_clips"):
        out.append(f"split {split} lists a clip again {report['repeated_clips']} time(s) (the same real path): "
                   "each copy is scored, so the number counts those clips more than once; list each clip once")
    if report["status"] != "recorded":
        out.append(f"{report['checkpoint']} has no provenance record ({report.get('error') or 'it predates records'}): "
                   "cannot check that this split was not trained on")
        return warnings, out
    out.append("trained on: " + "; ".join(f"{phase} {s.get('data') or s.get('status')}"
                                          for phase, s in report["trained_on"].items()))
    for phase, found in report["overlap_with_training"].items():
        if "splits" not in found:
            out.append(f"{phase}: {found.get('status')} ({found.get('reason') or found.get('checkpoint') or ''}): "
                       "cannot check this split against it")
    if report["training"]:
        parts = [f"{phase} {name}: {c['by_path']} by path, {c['by_content']} by content"
                 for phase, found in report["overlap_with_training"].items()
                 for name, c in found.get("splits", {}).items() if c["either"]]
        warnings.append(f"{report['training']} of {n} clips of split {split} were in the checkpoint's TRAINING data "
                        f"({'; '.join(parts)}): these numbers are not a held-out score. Pass --allow-overlap to "
                        "score training clips on purpose")
    if report["selection"]:
        if report["selection_only"]:
            out.append(f"the checkpoint was selected on the clips it is scored on: split {split} is its validation "
                       "split (checkpoint_best.pt is the best epoch on these clips): an optimistic number")
        else:
            out.append(f"{report['selection']} of {n} clips of split {split} are in the checkpoint's validation split, "
                       "which it was selected on")
    return warnings, out


def print_provenance(prog: str, report: dict, split: str, leaks: Iterable[str] = ()) -> bool:
    """Print ``provenance_notes`` (and further ``leaks``) on stderr; True when any leak."""
    found, notes = provenance_notes(report, split)
    found += leaks
    for note in notes:
        print(f"{prog}: {note}", file=sys.stderr)
    for leak in found:
        print(f"{prog}: WARNING: {leak}", file=sys.stderr)
    return bool(found)


def exit_code(leaked: bool, allow_overlap: bool, failed: bool = False) -> int:
    """3 for clips the checkpoint was trained on (unless allowed), else 1 when ``failed``."""
    return 3 if leaked and not allow_overlap else int(bool(failed))
