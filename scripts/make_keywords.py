"""Regenerate the keyword set under data/keywords (committed; needs espeak-ng).

A miniature Speech-Commands-like data set for fine-tuning tests and demos: 10 spoken
keywords (yes, no, up, down, left, right, on, off, stop, go) synthesised by espeak-ng in
18 voices (an accent such as en-us / en-gb-scotland / en-029, optionally with a voice
variant such as +f3 or +m3), each rendered with random speaking-rate and pitch jitter,
trimmed, placed at a random offset in a 1 s clip, given a random gain and mixed with
low-level white noise (SNR 33-43 dB), and written as 16 kHz mono 16-bit FLAC.

The split is by VOICE, so the test set measures generalisation to unseen speakers:

* train: 12 voices, 1 take per word      -> 120 clips
* valid: 2 voices, 1 take per word        ->  20 clips
* test:  4 voices, 1 take per word        ->  40 clips

The test voices use an accent or a variant that no training voice uses. Files go to
``audio/{split}/{voice}/{word}_{take}.flac``; beside them ``{split}.tsv`` (relative root
``audio``, resolved by the manifest reader against the manifest's folder), ``{split}.lbl``
(``clip_id<TAB>class_index``) and ``label_descriptors.csv``. Output depends only on
``--seed`` (and the installed espeak-ng version).

    python scripts/make_keywords.py [--out data/keywords] [--seed 0] [--takes 1]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from mae_ast.data.labels import write_label_descriptors, write_labels
from mae_ast.data.resample import resample
from mae_ast.data.datadir import audio_length

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
RATE = 16000
CLIP_SAMPLES = RATE  # 1 s, like Speech Commands

# Voices by split. Held-out voices use accents (en-029, en-gb-x-gbcwmd, en-us-nyc) or
# variants (f2, f4, m7) that appear in no training voice; valid voices are unseen combinations.
SPLIT_VOICES = {
    "train": ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-us+f3", "en-gb+m3",
              "en-us+f5", "en-gb-x-rp+m2", "en-gb-x-gbclan", "en-gb-scotland+f1", "en-us+m4", "en-gb+m6"],
    "valid": ["en-gb-x-gbclan+f3", "en-us+m1"],
    "test": ["en-029", "en-gb-x-gbcwmd+f4", "en-us-nyc+m7", "en-gb+f2"],
}


@dataclass
class Clip:
    split: str
    voice: str
    word: str
    take: int

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.voice.replace('+', '_')}/{self.word}_{self.take}.flac"


def synthesize(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's rendering of ``word`` as float32 at 16 kHz."""
    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                         capture_output=True, check=True).stdout
    wav, rate = sf.read(io.BytesIO(out), dtype="float32")
    return resample(torch.from_numpy(wav), rate, RATE).numpy()


def trim(wav: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Drop espeak's leading/trailing silence so the offset we choose is the real onset."""
    loud = np.flatnonzero(np.abs(wav) > threshold * np.abs(wav).max())
    return wav[loud[0]: loud[-1] + 1] if loud.size else wav


def render(word: str, voice: str, rng: np.random.Generator) -> np.ndarray:
    """One 1 s clip: jittered rate/pitch, random onset, random gain, low-level noise."""
    speed = int(rng.integers(130, 211))  # espeak words per minute (default 175)
    pitch = int(rng.integers(25, 76))  # espeak pitch 0-99 (default 50)
    speech = trim(synthesize(word, voice, speed, pitch))[: int(0.9 * CLIP_SAMPLES)]
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    start = int(rng.integers(0, CLIP_SAMPLES - len(speech) + 1))
    clip[start: start + len(speech)] = speech / max(np.abs(speech).max(), 1e-6) * rng.uniform(0.3, 0.8)
    speech_power = float(np.mean(clip[start: start + len(speech)] ** 2))
    snr_db = rng.uniform(33, 43)  # quiet enough to keep FLAC small (~15 KB a clip)
    noise = rng.standard_normal(CLIP_SAMPLES).astype(np.float32) * np.sqrt(speech_power / 10 ** (snr_db / 10))
    return np.clip(clip + noise, -1, 1)


def plan(takes: int) -> list[Clip]:
    return [Clip(split, voice, word, take) for split, voices in SPLIT_VOICES.items()
            for voice in voices for word in WORDS for take in range(takes)]


def write_split(out: str, split: str, clips: list[Clip]) -> None:
    audio = os.path.join(out, "audio")
    with open(os.path.join(out, f"{split}.tsv"), "w") as f:
        f.write("audio\n")  # relative root, resolved against the manifest's folder
        for clip in clips:
            f.write(f"{clip.relpath}\t{audio_length(os.path.join(audio, clip.relpath))}\n")
    ids = [os.path.splitext(c.relpath)[0] for c in clips]
    write_labels(os.path.join(out, f"{split}.lbl"), [[WORDS.index(c.word)] for c in clips], ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join("data", "keywords"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--takes", type=int, default=1, help="renderings per (voice, word)")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        parser.error("espeak-ng not found (apt-get install espeak-ng)")

    audio = os.path.join(args.out, "audio")
    shutil.rmtree(audio, ignore_errors=True)  # stale clips from another seed/plan must not linger
    clips = plan(args.takes)
    rng = np.random.default_rng(args.seed)
    for clip in clips:
        path = os.path.join(audio, clip.relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sf.write(path, render(clip.word, clip.voice, rng), RATE, subtype="PCM_16", format="FLAC")
    for split in SPLIT_VOICES:
        write_split(args.out, split, [c for c in clips if c.split == split])
    write_label_descriptors(os.path.join(args.out, "label_descriptors.csv"), WORDS)
    print(f"{len(clips)} clips in {args.out}: " + ", ".join(
        f"{s} {sum(c.split == s for c in clips)}" for s in SPLIT_VOICES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
