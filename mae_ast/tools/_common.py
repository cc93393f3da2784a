"""Argument checks the command-line tools share, so a bad value is refused in one line when
the command is parsed (exit 2), before a checkpoint is loaded or any audio is read.

    p.add_argument("--device", type=device_arg)
    p.add_argument("--batch-size", type=positive_int)
    args = p.parse_args(argv)
    check_output(p, args.json, "--json")   # parser.error unless it can be written
    ...                                    # the work
    write_json(args.json, result)          # missing parent folders made, strict JSON

Output paths are checked when the command is parsed (a folder where a file is wanted, a
file where a folder must be made, no write permission) and their missing folders are made
when the output is written, so no tool fails with a traceback after all its work, and a
refused command leaves no empty folder behind.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch


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
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: unsupported device type {device.type!r}; use cpu or cuda")
    return text


def check_output(parser: argparse.ArgumentParser, path: str | None, option: str, folder: bool = False) -> None:
    """``parser.error`` (exit 2) unless the output file (or, with ``folder``, the output
    folder) ``path`` can be written: not a folder (a file), the nearest existing folder
    above it writable. Nothing is created here: missing folders are made when the output
    is written (``write_json``, ``output_folder``), so a command refused later leaves none."""
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
    """``value`` with every non-finite float (NaN, +-inf) replaced by ``None`` (JSON null),
    in nested dicts and lists too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


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
