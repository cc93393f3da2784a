"""SUPERB through s3prl 0.4.18's own ``run_downstream.py``, via ``scripts/superb.sh``: KS1
(speech_commands) trained a few steps, then ``-m evaluate -e dev-best.ckpt`` on the test
split, on spoken keywords in Speech Commands' layout.

The runner lives in its own venv (``.cache/superb-venv``, built by the script on first use;
a few minutes, then reused). The audio is the committed espeak-ng keyword set
(``data/keywords``, made by ``scripts/make_keywords.py``), laid out as Speech Commands v0.01:
``<word>/<speaker>_nohash_0.wav``, ``_background_noise_/``, a separate test root.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT

pytestmark = pytest.mark.slow

KEYWORDS = ROOT / "data" / "keywords" / "audio"
SUPERB = ROOT / "scripts" / "superb.sh"


def _dev_share(speaker: str) -> float:
    """Where Speech Commands' published split rule puts a speaker (0-100; < 10 is dev,
    10-20 the discarded test share): the data here needs speakers on both sides."""
    digest = int(hashlib.sha1(speaker.encode()).hexdigest(), 16)
    return (digest % 2**27) * (100.0 / (2**27 - 1))


def _speaker_id(voice: str, dev: bool) -> str:
    """A Speech-Commands-like speaker id for ``voice`` that lands in dev (or in train)."""
    for n in range(10_000):
        speaker = f"{hashlib.md5(f'{voice}{n}'.encode()).hexdigest()[:8]}"
        share = _dev_share(speaker)
        if (share < 10) if dev else (share >= 20):
            return speaker
    raise AssertionError(voice)


def speech_commands_layout(out: Path) -> tuple[Path, Path]:
    """(train root, test root) in Speech Commands v0.01's layout, from the keyword set.

    Train root: the train voices (their speaker ids hashed into train) and the valid voices
    (hashed into dev), plus background noise for ``_silence_``. Test root: the unseen test
    voices, written at 22.05 kHz so the runner's ``rate 16000`` effect has work to do.
    """
    train_root, test_root = out / "speech_commands_v0.01", out / "speech_commands_test_set_v0.01"
    for split, root, dev in (("train", train_root, False), ("valid", train_root, True), ("test", test_root, False)):
        for voice in sorted((KEYWORDS / split).iterdir()):
            speaker = _speaker_id(voice.name, dev)
            for clip in sorted(voice.glob("*.flac")):
                wav, rate = sf.read(clip, dtype="float32")
                if split == "test":
                    n = int(len(wav) * 22050 / rate)
                    wav, rate = np.interp(np.arange(n) * rate / 22050, np.arange(len(wav)), wav), 22050
                word = clip.stem.split("_")[0]
                path = root / word / f"{speaker}_nohash_0.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wav, rate, subtype="PCM_16")
    noise = train_root / "_background_noise_" / "white_noise.wav"
    noise.parent.mkdir(parents=True)
    sf.write(noise, np.random.default_rng(0).uniform(-0.1, 0.1, 3 * 16000).astype(np.float32), 16000)
    return train_root, test_root


def test_ks1_trains_and_evaluates_dev_best_in_s3prls_runner(tmp_path, patch_checkpoint):
    train_root, test_root = speech_commands_layout(tmp_path / "data")
    overrides = ",,".join([
        "config.runner.total_steps=2", "config.runner.eval_step=2", "config.runner.save_step=2",
        "config.runner.log_step=2", "config.runner.eval_dataloaders=['dev']", "config.downstream_expert.datarc.batch_size=8",
        "config.downstream_expert.datarc.num_workers=0",
        f"config.downstream_expert.datarc.speech_commands_root='{train_root}/'",
        f"config.downstream_expert.datarc.speech_commands_test_root='{test_root}/'",
    ])
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    proc = subprocess.run(
        ["bash", str(SUPERB), "ks1", "-k", str(patch_checkpoint), "-n", "ks1_test", "-o", overrides],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800, env=env,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    expdir = tmp_path / "result" / "downstream" / "ks1_test"
    assert (expdir / "dev-best.ckpt").is_file()
    # The evaluate run's score line is s3prl's speech_commands expert's own print.
    scores = re.findall(r"^test acc: ([0-9.]+)$", proc.stdout, flags=re.M)
    assert scores, out[-4000:]
    accuracy = float(scores[-1])
    assert 0.0 <= accuracy <= 1.0
    # ... and it is the accuracy of the predictions s3prl wrote for the 40 test clips.
    truth = dict(line.split() for line in (expdir / "test_truth.txt").read_text().splitlines())
    predicted = dict(line.split() for line in (expdir / "test_predict.txt").read_text().splitlines())
    assert len(truth) == 40 and truth.keys() == predicted.keys()
    assert accuracy == pytest.approx(np.mean([truth[k] == predicted[k] for k in truth]))
    assert "--device cpu" in proc.stderr  # chosen from the machine, not s3prl's cuda default
