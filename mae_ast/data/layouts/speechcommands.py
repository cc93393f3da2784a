"""Speech Commands v0.02: 35 word classes, or SUPERB's KS1 (10 words, _unknown_, _silence_
cut from the background noise); splits from validation_list.txt / testing_list.txt."""

from __future__ import annotations

import os
import random

import numpy as np

from ..audio_io import AudioError, read_audio
from ..datadir import inside
from ..labels import class_order
from .common import Clip, DataDir, LayoutError, PrepareOptions, find_audio, require

KS1_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
KS1_CLASSES = KS1_WORDS + ["_unknown_", "_silence_"]  # SUPERB's order


def prepare_speechcommands(opts: PrepareOptions) -> list[DataDir]:
    """35 classes (every word folder) or SUPERB's 12 (``ks1``); splits from the two list files."""
    src = os.path.abspath(opts.src)
    expected = "expected the Speech Commands folder: one folder per word, validation_list.txt, testing_list.txt"
    lists = {s: _read_list(require(os.path.join(src, f"{n}_list.txt"), expected))
             for s, n in (("valid", "validation"), ("test", "testing"))}
    files = _word_files(src, os.path.abspath(opts.out))
    if not files:
        raise LayoutError(f"{src}: no word folders with audio: {expected}")
    splits: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for rel in files:
        split = "test" if rel in lists["test"] else "valid" if rel in lists["valid"] else "train"
        splits[split].append(rel)
    if opts.variant == "ks1":
        return [_ks1(opts, src, splits)]
    names = class_order({rel.split("/")[0] for rel in files})
    index = {name: i for i, name in enumerate(names)}
    clips = {s: [Clip(os.path.join(src, r), [index[r.split("/")[0]]]) for r in rels] for s, rels in splits.items()}
    return [DataDir(opts.out, src, names, clips)]


def _read_list(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        return {line.strip().replace("\\", "/") for line in f if line.strip()}


def _word_files(src: str, out: str) -> list[str]:
    """'word/file.wav' of every clip in a word folder; folders starting with '_' (noise) are not
    words, nor is one holding OUT (its _silence_ crops)."""
    files = []
    for word in sorted(os.listdir(src)):
        folder = os.path.join(src, word)
        if not word.startswith(("_", ".")) and os.path.isdir(folder) and not inside(out, folder):
            files += [os.path.relpath(p, src).replace(os.sep, "/") for p in find_audio(os.path.join(src, word))]
    return files


def _ks1(opts: PrepareOptions, src: str, splits: dict[str, list[str]]) -> DataDir:
    index = {name: i for i, name in enumerate(KS1_CLASSES)}
    unknown = index["_unknown_"]
    noise = find_audio(os.path.join(src, "_background_noise_"))
    if not noise:
        raise LayoutError(f"{src}/_background_noise_: no audio to cut _silence_ clips from")
    clips = {}
    for split, rels in splits.items():
        words = [Clip(os.path.join(src, r), [index.get(r.split("/")[0], unknown)]) for r in rels]
        count = opts.silence_per_split if opts.silence_per_split is not None else round(len(words) / 11)
        clips[split] = words + _silence(noise, opts.out, split, count, opts.seed, index["_silence_"], opts.notes)
    return DataDir(opts.out, src, KS1_CLASSES, clips)


def _silence(noise: list[str], out: str, split: str, count: int, seed: int, label: int,
             notes: list[str]) -> list[Clip]:
    """``count`` 1 s crops at random offsets (seeded per split) cycling over the noise files,
    written as 16 kHz wavs to OUT/_silence_/."""
    import soundfile as sf

    folder = os.path.join(os.path.abspath(out), "_silence_")
    os.makedirs(folder, exist_ok=True)
    waves = [w for w in (_noise(p, notes) for p in noise) if len(w) >= 16000]
    if count and not waves:
        raise LayoutError(f"{os.path.dirname(noise[0])}: no noise file lasts 1 s or more")
    rng = random.Random(f"{seed}/{split}")
    clips = []
    for i in range(count):
        wave = waves[i % len(waves)]
        start = rng.randrange(len(wave) - 16000 + 1)
        path = os.path.join(folder, f"{split}_{i:05d}.wav")
        sf.write(path, wave[start : start + 16000], 16000, subtype="PCM_16")
        clips.append(Clip(path, [label]))
    return clips


def _noise(path: str, notes: list[str]) -> np.ndarray:
    try:
        return read_audio(path, 16000).numpy()
    except AudioError as err:
        notes.append(f"unreadable noise file, not used for _silence_: {err}")
        return np.zeros(0, dtype=np.float32)
