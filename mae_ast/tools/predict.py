"""``mae-ast-predict``: label audio files with a fine-tuned MAE-AST classifier.

    mae-ast-predict OUT/checkpoint_best.pt clip.wav recordings/ [--top-k 5] [--hop 0.5]
        [--crop windows|start] [--windows] [--aggregate auto|mean|max] [--json predictions.json]
        [--batch-size 32] [--device cpu]

Folders are walked for audio files (the extensions of ``mae_ast.data.audio_io.AUDIO_EXTENSIONS``);
a manifest ``.tsv`` (as ``mae-ast-manifest``/``mae-ast-extract`` use) stands for its clips.
Each file is read at the classifier's sample rate and scored over windows of the model's
input length (``target_length`` frames): a file no longer than that is one (padded)
window; a longer one is scored in sliding windows every ``--hop`` seconds (default: half
a window; at most one window, so no frame is skipped), the last window aligned to the end
of the file, so every frame is seen. The file's scores aggregate its windows: ``mean`` of
the window probabilities (the default for single-label models: a clip-level class
posterior) or ``max`` (the default for multi-label models: a sound event present in any
window is present in the file). Windows go through the model ``--batch-size`` at a time,
so memory does not grow with the length of a recording beyond its features.

``--crop start`` scores only the first window of each file instead, as
``mae-ast-evaluate``'s default and validation in training do (the fine-tuning recipe's
protocol); the summary says how many files were longer than one window, i.e. windowed
(default) or cut (``--crop start``).

``--windows`` prints the timeline (start-end seconds and top label of each window); the
JSON always holds it, each window with its ``--top-k`` labels (``--top-k 0``: every
class). A digitally silent file is scored. Unreadable files are named on stderr and counted.

Provenance (``mae_ast.provenance``): the JSON names the checkpoint (path and hash), what
it was trained on and ``overlap_with_training`` of the files scored; files the checkpoint
was trained on are a loud warning and exit 3 unless ``--allow-overlap``.

Exit code: 0 when every file was scored, 1 when any could not be, 2 when the arguments or
the checkpoint cannot be used, 3 when files were in the checkpoint's training data.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from .. import provenance
from ..classifier import WINDOW_BATCH, Classifier, window_starts
from ..data.audio_io import AUDIO_EXTENSIONS, AudioError
from ..data.datadir import find_audio
from ..data.manifest import ManifestError, read_manifest
from ._common import (
    check_output, device_arg, json_safe, open_classifier, positive_float, positive_int, write_json,
)


@dataclass
class Prediction:
    """One file's scores: the aggregate over windows, and each window with its span in seconds."""

    path: str
    duration_s: float
    scores: torch.Tensor  # (C,)
    window_scores: torch.Tensor  # (windows, C)
    spans: list[tuple[float, float]] = field(default_factory=list)
    long: bool = False  # longer than one window: windowed, or cut with --crop start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mae-ast-predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="fine-tuned classifier checkpoint (checkpoint_best.pt)")
    p.add_argument("audio", nargs="+", help="audio files, folders (walked recursively) or manifests (.tsv)")
    p.add_argument("--top-k", type=int, default=5, help="labels shown per file and window; 0 = all (default: 5)")
    p.add_argument("--hop", type=positive_float, default=None,
                   help="seconds between window starts in long files, at most the model's input length "
                        "(default: half of it)")
    p.add_argument("--crop", choices=["windows", "start"], default="windows",
                   help="windows: score every frame of a long file in sliding windows (default); start: only "
                        "its first window, as mae-ast-evaluate's default and validation in training")
    p.add_argument("--aggregate", choices=["auto", "mean", "max"], default="auto",
                   help="how window scores make the file's: auto = mean for single-label, max for multi-label")
    p.add_argument("--windows", action="store_true", help="also print each window's span and top label")
    p.add_argument("--json", help="write every file's scores and windows (top-k labels each) to this JSON file; "
                                  "missing folders are made")
    p.add_argument("--batch-size", type=positive_int, default=WINDOW_BATCH,
                   help=f"windows per forward pass (default: {WINDOW_BATCH})")
    p.add_argument("--device", type=device_arg, default=None,
                   help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="score files the checkpoint was trained on without exit 3")
    args = p.parse_args(argv)
    if args.top_k < 0:
        p.error("--top-k must be >= 0")
    if args.hop is not None and args.crop == "start":
        p.error("--hop applies to --crop windows only")
    check_output(p, args.json, "--json")
    return args


def find_files(inputs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Audio files named, found under the folders named or listed by the manifests (.tsv)
    named, and (path, reason) for inputs that yield none."""
    files, errors = [], []
    for item in inputs:
        if item.endswith(".tsv") and os.path.isfile(item):
            try:
                files.extend(read_manifest(item).paths)
            except ManifestError as err:
                errors.append((item, str(err).removeprefix(f"{item}: ")))
        elif os.path.isdir(item):
            found = [os.path.join(item, rel) for rel in find_audio(item)]
            if not found:
                errors.append((item, f"folder holds no audio file ({', '.join(sorted(AUDIO_EXTENSIONS))})"))
            files.extend(found)
        else:
            files.append(item)  # FeatureSpec.read names a missing or unreadable file
    return files, errors


def window_spans(clf: Classifier, num_samples: int, starts: list[int]) -> list[tuple[float, float]]:
    """Seconds covered by each window's frames (a padded single window covers the file)."""
    spec = clf.feature_spec
    rate = spec.sample_rate
    span = spec.samples_for_frames(clf.target_length)
    return [(s * spec.shift_samples / rate, min(s * spec.shift_samples + span, num_samples) / rate) for s in starts]


def predict_file(clf: Classifier, path: str, hop: int, how: str, crop: str, batch_size: int) -> Prediction:
    """Scores of one file; ``AudioError`` when it cannot be read or is too short for one patch."""
    wav = clf.feature_spec.read(path, allow_silence=True)
    try:
        feat = clf.clip_features(wav)
    except ValueError as err:  # the input contract refused the waveform (e.g. not on the [-1, 1] scale)
        raise AudioError(path, str(err)) from err
    min_frames = clf.model.backbone.grid.min_frames
    if len(feat) < min_frames:
        raise AudioError(path, f"{len(wav) / clf.feature_spec.sample_rate:.3f} s gives {len(feat)} frames, "
                               f"fewer than one patch ({min_frames} frames)")
    frames = len(feat)
    if crop == "start":
        feat = feat[: clf.target_length]
    window_scores = clf.scores_feature_windows(feat, hop, batch_size)
    starts = window_starts(len(feat), clf.target_length, hop)
    return Prediction(path, len(wav) / clf.feature_spec.sample_rate, clf.aggregate(window_scores, how),
                      window_scores, window_spans(clf, len(wav), starts), long=frames > clf.target_length)


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
    spec = clf.feature_spec
    window_s = spec.samples_for_frames(clf.target_length) / spec.sample_rate
    if n_long:
        print(f"mae-ast-predict: {long_note(clf, n_long, len(results), args.crop, how)}", file=sys.stderr)
    if errors:
        print(f"mae-ast-predict: {len(errors)} input(s) could not be scored, {len(results)} scored", file=sys.stderr)
    scored = [r["path"] for r in results]
    seen = provenance.overlap_report(clf.checkpoint.state, args.checkpoint, scored)
    if seen["training"]:
        named = [scored[i] for i in seen["trained_clips"][:3]]
        print(f"mae-ast-predict: WARNING: {seen['training']} of {len(scored)} scored file(s) were in the "
              f"checkpoint's TRAINING data (e.g. {named}): their scores say nothing about unseen audio. Pass "
              "--allow-overlap to score training files on purpose", file=sys.stderr)
    if args.json:
        report = {"checkpoint": args.checkpoint, "class_names": clf.class_names, "multi_label": clf.multi_label,
                  "aggregate": how, "crop": args.crop, "window_s": window_s,
                  "hop_s": hop * spec.shift_samples / spec.sample_rate,
                  "n_windowed": n_long if args.crop == "windows" else 0,
                  "n_cropped": n_long if args.crop == "start" else 0, "files": results,
                  "errors": [{"path": p, "error": r} for p, r in errors],
                  "checkpoint_hash": seen["checkpoint_hash"], "overlap_with_training": seen["training"],
                  "provenance": seen}
        write_json(args.json, json_safe(report))
    if seen["training"] and not args.allow_overlap:
        return 3
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
