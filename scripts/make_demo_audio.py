"""Regenerate the demo audio set under data/demo (committed; needs espeak-ng and sox).

40 clips of 2.5-5 s: 24 synthetic speech clips (espeak-ng, several voices and rates)
and 16 environmental-style sounds (sox: rain, wind, chirps, plucks, engines, sirens).
Formats vary on purpose, to exercise the loaders: 16 kHz and 22.05 kHz mono flac,
44.1 kHz stereo flac and wav, and mkv (Opus and AAC in Matroska, written with PyAV).
Manifests train/valid/test.tsv (24/8/8 clips) use the relative root "audio", which the
task resolves against the manifest's folder.

    PYTHONPATH=. python scripts/make_demo_audio.py [--out data/demo]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile

import soundfile as sf

from tests.audio_files import encode_audio

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Masked autoencoders learn to reconstruct what they cannot see.",
    "Please call Stella and ask her to bring these things from the store.",
    "A spectrogram shows how the energy of a sound changes over time.",
    "Six slippery snails slid slowly seaward on a sunny afternoon.",
    "The weather tomorrow will be cloudy with a chance of light rain.",
    "Turn left at the next corner and walk two blocks to the station.",
    "Audio transformers split sound into patches of time and frequency.",
    "She sells sea shells by the sea shore every summer morning.",
    "Numbers like seven, forty two and one thousand are easy to say.",
    "The library opens at nine and closes at five on weekdays.",
    "Listen carefully to the pitch and rhythm of every spoken word.",
]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-us+f3", "en-gb+m3", "en-us+f5"]

ENVIRONMENT = [  # sox effects after "sox -n -r RATE -c 1 OUT synth DUR ..."
    ["pinknoise", "tremolo", "7", "40", "lowpass", "4000"],  # rain
    ["brownnoise", "lowpass", "600", "tremolo", "0.4", "70"],  # wind
    ["sine", "400-2400", "tremolo", "6", "50"],  # chirp
    ["sine", "700", "sine", "950", "tremolo", "1.2", "90"],  # siren-ish
    ["sawtooth", "55", "lowpass", "900", "tremolo", "18", "30"],  # engine
    ["pluck", "C4", "pluck", "E4", "tremolo", "2", "80"],  # plucked strings
    ["whitenoise", "highpass", "3000", "tremolo", "11", "85"],  # insects
    ["square", "220", "lowpass", "1500", "tremolo", "3", "95"],  # alarm
]


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def speech(path: str, text: str, voice: str, speed: int, rate: int, tmp: str) -> None:
    wav = os.path.join(tmp, "tts.wav")
    run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", wav, text])
    # Pad to at least 2.5 s so every clip passes the config's min_sample_size (2 s).
    run(["sox", wav, "-r", str(rate), "-c", "1", path, "pad", "0.2", "0.3", "norm", "-3"])
    if sf.info(path).duration < 2.5:
        run(["sox", wav, "-r", str(rate), "-c", "1", path, "pad", "0.2", "2.3", "norm", "-3"])


def environment(path: str, effect: list[str], dur: float, rate: int, channels: int) -> None:
    run(["sox", "-n", "-r", str(rate), "-c", str(channels), path, "synth", f"{dur:.2f}", *effect, "norm", "-6"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/demo")
    args = parser.parse_args()
    rng = random.Random(7)
    audio = os.path.join(args.out, "audio")
    os.makedirs(audio, exist_ok=True)
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(24):
            rate = 22050 if i % 6 == 5 else 16000
            name = f"speech_{i:02d}.flac"
            speech(os.path.join(audio, name), SENTENCES[i % len(SENTENCES)], VOICES[i % len(VOICES)],
                   rng.randint(130, 185), rate, tmp)
            clips.append(name)
        for i in range(16):
            effect = ENVIRONMENT[i % len(ENVIRONMENT)]
            dur = rng.uniform(2.5, 5.0)
            if i in (3, 11):  # 44.1 kHz stereo, flac and wav
                name = f"env_{i:02d}_44k_stereo." + ("flac" if i == 3 else "wav")
                environment(os.path.join(audio, name), effect, dur, 44100, 2)
            elif i in (6, 14):  # Matroska as AudioSet's downloads: Opus 48 kHz, or AAC
                name = f"env_{i:02d}.mkv"
                tmp_wav = os.path.join(tmp, "env.wav")
                rate = 48000 if i == 6 else 16000
                environment(tmp_wav, effect, dur, rate, 1)
                wav, _ = sf.read(tmp_wav, dtype="float32")
                encode_audio(os.path.join(audio, name), wav, rate, "libopus" if i == 6 else "aac")
            else:
                name = f"env_{i:02d}.flac"
                environment(os.path.join(audio, name), effect, dur, 16000, 1)
            clips.append(name)

    from mae_ast.data.datadir import audio_length

    rng.shuffle(clips)
    splits = {"train": clips[:24], "valid": clips[24:32], "test": clips[32:]}
    for split, names in splits.items():
        with open(os.path.join(args.out, f"{split}.tsv"), "w") as f:
            f.write("audio\n")
            for name in sorted(names):
                f.write(f"{name}\t{audio_length(os.path.join(audio, name))}\n")
    total = sum(os.path.getsize(os.path.join(audio, n)) for n in clips)
    print(f"wrote {len(clips)} clips ({total / 1e6:.1f} MB) and manifests to {args.out}")


if __name__ == "__main__":
    main()
