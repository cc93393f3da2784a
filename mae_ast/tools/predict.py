"""``mae-ast-predict``: label audio files with a fine-tuned MAE-AST classifier.

Exit code: 0 when every file was scored, 1 when any could not be, 2 when the arguments or
the checkpoint cannot be used, 3 when files were in the checkpoint's training data.
Windows and aggregation: README, 'Fine-tuning and evaluation' (mae-ast-predict).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .. import provenance
from ..classifier import WINDOW_BATCH, Classifier, window_starts
from ..data.audio_io import AUDIO_EXTENSIONS, AudioError
from ..data.manifest import ManifestError
from ._common import (
    add_batch_and_device, add_window_args, check_scoring_args, exit_code, json_safe, list_inputs, open_classifier,
    provenance_notes, tool_parser, write_json,
)


@dataclass
class Prediction:
    """One file's scores: the aggregate over windows, and each window with its span in seconds."""

    path: str
    duration_s: float
    scores: torch.Tensor  # (C,)
    window_scores: torch.Tensor  # (windows, C)
    spans: list[tuple[float, float]]
    long: bool  # longer than one window: windowed, or cut with --crop start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = tool_parser("mae-ast-predict", __doc__)
    p.add_argument("checkpoint", help="fine-tuned classifier checkpoint (checkpoint_best.pt)")
    p.add_argument("audio", nargs="+", help="audio files, folders (walked recursively) or manifests (.tsv)")
    p.add_argument("--top-k", type=int, default=5, help="labels shown per file and window; 0 = all (default: 5)")
    add_window_args(p, "windows")
    p.add_argument("--aggregate", choices=["auto", "mean", "max"], default="auto",
                   help="how window scores make the file's: auto = mean for single-label, max for multi-label")
    p.add_argument("--windows", action="store_true", help="also print each window's span and top label")
    p.add_argument("--json", help="write every file's scores and windows (top-k labels each) to this JSON file; "
                                  "missing folders are made")
    add_batch_and_device(p, WINDOW_BATCH, "windows")
    p.add_argument("--allow-overlap", action="store_true",
                   help="score files the checkpoint was trained on without exit 3")
    args = p.parse_args(argv)
    if args.top_k < 0:
        p.error("--top-k must be >= 0")
    check_scoring_args(p, args)
    return args


def find_files(inputs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The audio files of ``inputs`` (``list_inputs``; ``FeatureSpec.read`` names a missing
    file), and (path, reason) for inputs that yield none."""
    files, errors = [], []
    for item in inputs:
        try:
            found = [path for path, _ in list_inputs(item)]
        except ManifestError as err:
            errors.append((item, str(err).removeprefix(f"{item}: ")))
            continue
        if not found and os.path.isdir(item):
            errors.append((item, f"folder holds no audio file ({', '.join(sorted(AUDIO_EXTENSIONS))})"))
        files.extend(found)
    return files, errors


def predict_file(clf: Classifier, path: str, hop: int, how: str, crop: str, batch_size: int) -> Prediction:
    """Scores of one file; ``AudioError`` when it cannot be read or is too short for one patch."""
    spec = clf.feature_spec
    wav = spec.read(path, allow_silence=True)  # AudioError also when off the [-1, 1] scale
    rate = spec.sample_rate
    seconds = len(wav) / rate
    # Counted before computing: fbank raises ValueError below one window
    frames, min_frames = spec.frames(len(wav)), clf.model.backbone.grid.min_frames
    if frames < min_frames:
        raise AudioError(path, f"{seconds:.3f} s gives {frames} frames, fewer than one patch ({min_frames} frames)")
    feat = clf.clip_features(wav)
    long = len(feat) > clf.target_length
    if crop == "start":
        feat = feat[: clf.target_length]
    window_scores = clf.scores_feature_windows(feat, hop, batch_size)
    # Seconds covered by each window's frames (a padded single window covers the file).
    shift, span = spec.shift_samples, spec.samples_for_frames(clf.target_length)
    spans = [(s * shift / rate, min(s * shift + span, len(wav)) / rate)
             for s in window_starts(len(feat), clf.target_length, hop)]
    return Prediction(path, seconds, clf.aggregate(window_scores, how), window_scores, spans, long)


def top(clf: Classifier, scores: torch.Tensor, k: int) -> list[tuple[str, float]]:
    """The ``k`` best (label, score) pairs, best first (all classes when ``k`` is 0)."""
    values, indices = scores.topk(min(k or len(scores), len(scores)))
    return [(clf.class_names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]


def describe(clf: Classifier, pred: Prediction, k: int, how: str, windows: bool) -> str:
    lines = [f"{pred.path}  ({pred.duration_s:.2f} s, {len(pred.window_scores)} window"
             f"{'s' if len(pred.window_scores) != 1 else ''}, {how})"]
    lines += [f"  {score:.4f}  {label}" for label, score in top(clf, pred.scores, k)]
    if windows:
        for (start, end), scores in zip(pred.spans, pred.window_scores):
            (label, score), = top(clf, scores, 1)
            lines.append(f"    {start:7.2f} - {end:7.2f} s  {label} ({score:.3f})")
    return "\n".join(lines)


def as_json(clf: Classifier, pred: Prediction, k: int) -> dict:
    def labels(scores: torch.Tensor) -> list[dict]:
        return [{"label": label, "score": score} for label, score in top(clf, scores, k)]

    return {"path": pred.path, "duration_s": pred.duration_s, "top": labels(pred.scores),
            "windows": [{"start_s": start, "end_s": end, "top": labels(scores)}
                        for (start, end), scores in zip(pred.spans, pred.window_scores)]}


def long_note(clf: Classifier, n_long: int, n_files: int, crop: str, how: str) -> str:
    """What happened to the files longer than the model's input, and the other mode."""
    head = f"{n_long} of {n_files} file(s) longer than the model's {clf.input_seconds:g} s input"
    if crop == "windows":
        return (f"{head} were scored in sliding windows ({how} over windows); --crop start scores only their "
                "first window, as mae-ast-evaluate does by default")
    return f"{head} were cut to their first window (--crop start); --crop windows scores every frame"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opened = open_classifier("mae-ast-predict", args.checkpoint, args.device, args.hop)
    if opened is None:
        return 2
    clf, hop = opened
    how = clf.aggregation if args.aggregate == "auto" else args.aggregate
    files, errors = find_files(args.audio)
    for path, reason in errors:
        print(f"mae-ast-predict: {path}: {reason}", file=sys.stderr)
    results, n_long = [], 0
    # The bar goes to stderr and only for several files; results are written through it.
    for path in tqdm(files, desc="predicting", unit="file", disable=len(files) < 2 or None, file=sys.stderr):
        try:
            pred = predict_file(clf, path, hop, how, args.crop, args.batch_size)
        except AudioError as err:
            errors.append((path, err.reason))
            tqdm.write(f"mae-ast-predict: {err}", file=sys.stderr)
            continue
        n_long += pred.long
        results.append(as_json(clf, pred, args.top_k))
        tqdm.write(describe(clf, pred, args.top_k, how, args.windows), file=sys.stdout)
    if n_long:
        print(f"mae-ast-predict: {long_note(clf, n_long, len(results), args.crop, how)}", file=sys.stderr)
    if errors:
        print(f"mae-ast-predict: {len(errors)} input(s) could not be scored, {len(results)} scored", file=sys.stderr)
    scored = [r["path"] for r in results]
    seen = provenance.overlap_report(clf.checkpoint.state, args.checkpoint, scored)
    for note in provenance_notes(seen, "scored")[1]:  # what it was trained on (its own warning below)
        print(f"mae-ast-predict: {note}", file=sys.stderr)
    if seen["training"]:
        named = [scored[i] for i in seen["trained_clips"][:3]]
        print(f"mae-ast-predict: WARNING: {seen['training']} of {len(scored)} scored file(s) were in the "
              f"checkpoint's TRAINING data (e.g. {named}): their scores say nothing about unseen audio. Pass "
              "--allow-overlap to score training files on purpose", file=sys.stderr)
    if args.json:
        report = {"checkpoint": args.checkpoint, "class_names": clf.class_names, "multi_label": clf.multi_label,
                  "aggregate": how, "crop": args.crop,
                  "window_s": clf.input_seconds, "hop_s": clf.feature_spec.seconds(hop),
                  "n_windowed": n_long if args.crop == "windows" else 0,
                  "n_cropped": n_long if args.crop == "start" else 0, "files": results,
                  "errors": [{"path": p, "error": r} for p, r in errors],
                  "checkpoint_hash": seen["checkpoint_hash"], "overlap_with_training": seen["training"],
                  "provenance": seen}
        write_json(args.json, json_safe(report))
    return exit_code(seen["training"], args.allow_overlap, errors)


if __name__ == "__main__":
    sys.exit(main())
