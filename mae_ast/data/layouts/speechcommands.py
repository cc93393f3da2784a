"""Speech Commands: 35 word classes (v0.02), or SUPERB's KS1 classes (10 words, _unknown_,
_silence_ cut from the background noise); splits from validation_list.txt / testing_list.txt.
SUPERB's KS1 test set is v0.01's separate folder (``test_set``, replacing testing_list.txt's
clips); without it, test is testing_list.txt plus _silence_ crops, NOT SUPERB's test set."""

from __future__ import annotations

import os
import random

import numpy as np

from ..audio_io import AudioError
from ..features import read_audio
from ..datadir import SPLITS, find_audio, inside
from ..labels import class_order, read_text
from .common import Clip, DataDir, LayoutError, PrepareOptions, require, subfolders

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
    if opts.test_set and opts.variant != "ks1":
        raise LayoutError("--test-set is SUPERB's KS1 test set: use it with --variant ks1")
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
    return {line.strip().replace("\\", "/") for line in read_text(path).splitlines() if line.strip()}


def _word_files(src: str, out: str) -> list[str]:
    """'word/file.wav' of every clip in a word folder; folders starting with '_' (noise) are not
    words, nor is one holding OUT (its _silence_ crops)."""
    words = [w for w in subfolders(src) if not w.startswith("_") and not inside(out, os.path.join(src, w))]
    return [f"{w}/{rel}".replace(os.sep, "/") for w in words for rel in find_audio(os.path.join(src, w))]


def _ks1(opts: PrepareOptions, src: str, splits: dict[str, list[str]]) -> DataDir:
    """SUPERB's 12 classes. The manifests' root is OUT (written relative, ``.``), so the
    ``_silence_`` crops there move with the folder; word clips are named by absolute path."""
    index = {name: i for i, name in enumerate(KS1_CLASSES)}
    unknown = index["_unknown_"]
    noise = find_audio(os.path.join(src, "_background_noise_"), absolute=True)
    if not noise:
        raise LayoutError(f"{src}/_background_noise_: no audio to cut _silence_ clips from")
    words = {split: [Clip(os.path.join(src, r), [index.get(r.split("/")[0], unknown)]) for r in rels]
             for split, rels in splits.items()}
    if opts.test_set:
        words["test"] = _test_set(opts.test_set, index)  # v0.01's own test clips, its _silence_ included
    counts = {split: (opts.silence_per_split if opts.silence_per_split is not None else round(len(w) / 11))
              for split, w in words.items() if not (split == "test" and opts.test_set)}
    crops = _silence(noise, opts.out, counts, opts.seed, index["_silence_"], opts.notes)
    clips = {split: w + crops.get(split, []) for split, w in words.items()}
    return DataDir(opts.out, os.path.abspath(opts.out), KS1_CLASSES, clips)


def _test_set(folder: str, index: dict[str, int]) -> list[Clip]:
    """SUPERB's KS1 test set: v0.01's ``speech_commands_test_set_v0.01``, one folder per class."""
    folder = os.path.abspath(require(folder, "expected speech_commands_test_set_v0.01 (one folder per class)"))
    clips = []
    for name in subfolders(folder):
        if name not in index:
            raise LayoutError(f"{os.path.join(folder, name)}: not a KS1 class ({', '.join(KS1_CLASSES)}); "
                              "--test-set takes v0.01's speech_commands_test_set folder")
        clips += [Clip(p, [index[name]]) for p in find_audio(os.path.join(folder, name), absolute=True)]
    if not clips:
        raise LayoutError(f"{folder}: no audio in class folders; --test-set takes v0.01's speech_commands_test_set")
    return clips


def _silence(noise: list[str], out: str, counts: dict[str, int], seed: int, label: int,
             notes: list[str]) -> dict[str, list[Clip]]:
    """``counts[split]`` 1 s crops per split, as 16 kHz wavs in OUT/_silence_/, each split's from
    its own stretch of every noise file (sized by its count), so no split shares a sample."""
    import soundfile as sf

    folder = os.path.join(os.path.abspath(out), "_silence_")
    waves = [w for w in (_noise(p, notes) for p in noise) if len(w) >= 16000]
    total = sum(counts.values())
    if total and not waves:
        raise LayoutError(f"{os.path.dirname(noise[0])}: no noise file lasts 1 s or more")
    order = [s for s in SPLITS if counts.get(s)]  # each noise file's stretches, in this order
    stretches: dict[str, list[np.ndarray]] = {s: [] for s in order}
    for wave in waves:
        start = 0
        for i, split in enumerate(order):
            end = len(wave) if i == len(order) - 1 else start + len(wave) * counts[split] // total
            if end - start >= 16000:
                stretches[split].append(wave[start:end])
            start = end
    os.makedirs(folder, exist_ok=True)
    clips: dict[str, list[Clip]] = {}
    for split in order:
        if not stretches[split]:
            raise LayoutError(f"{os.path.dirname(noise[0])}: the noise files are too short to cut {split}'s "
                              f"_silence_ from a part of them no other split uses (no file gives {split} 1 s); "
                              "lower --silence-per-split or add longer noise files")
        rng = random.Random(f"{seed}/{split}")
        clips[split] = []
        for i in range(counts[split]):
            wave = stretches[split][i % len(stretches[split])]
            start = rng.randrange(len(wave) - 16000 + 1)
            path = os.path.join(folder, f"{split}_{i:05d}.wav")
            sf.write(path, wave[start : start + 16000], 16000, subtype="PCM_16")
            clips[split].append(Clip(path, [label]))
    return clips


def _noise(path: str, notes: list[str]) -> np.ndarray:
    try:
        return read_audio(path, 16000).numpy()
    except AudioError as err:
        notes.append(f"unreadable noise file, not used for _silence_: {err}")
        return np.zeros(0, dtype=np.float32)
