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
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT

sys.path.insert(0, str(ROOT / "kits"))
import torchaudio_standin  # noqa: E402  (the kit itself; not installed as torchaudio here)

KEYWORDS = ROOT / "data" / "keywords" / "audio"
SUPERB = ROOT / "scripts" / "superb.sh"
VENV = Path(os.environ.get("SUPERB_VENV", ROOT / ".cache" / "superb-venv"))


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


@pytest.mark.slow
def test_ks1_trains_and_evaluates_dev_best_in_s3prls_runner(tmp_path, patch_checkpoint):
    train_root, test_root = speech_commands_layout(tmp_path / "data")
    overrides = ",,".join([
        "config.runner.total_steps=2", "config.runner.eval_step=2", "config.runner.save_step=2",
        "config.runner.log_step=2", "config.runner.eval_dataloaders=['dev']",
        "config.downstream_expert.datarc.batch_size=8",
        "config.downstream_expert.datarc.num_workers=0",
        f"config.downstream_expert.datarc.speech_commands_root='{train_root}/'",
        f"config.downstream_expert.datarc.speech_commands_test_root='{test_root}/'",
    ])
    # TORCH_FROM: the venv shares this one's torch and numeric stack (hard links), not GBs more disk
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["TORCH_FROM"] = sys.executable
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

    # A second call installs the upstream again the same way: one folder, one hub.py line.
    again = subprocess.run(["bash", str(SUPERB), "run", "--help"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600, env=env)
    assert again.returncode == 0 and "--upstream_feature_selection" in again.stdout, again.stderr[-3000:]
    where = "import os, s3prl; print(os.path.dirname(s3prl.__file__))"
    s3prl = Path(subprocess.run([str(VENV / "bin" / "python"), "-c", where], capture_output=True, text=True,
                                env=env, check=True).stdout.strip())
    hub_lines = (s3prl / "hub.py").read_text().splitlines()
    assert hub_lines.count("from s3prl.upstream.mae_ast_plus.hubconf import *") == 1
    assert not (s3prl / "upstream" / "mae_ast_plus" / "mae_ast_plus").exists()
    assert (s3prl / "upstream" / "mae_ast_plus" / "expert.py").read_bytes() == \
        (ROOT / "s3prl" / "mae_ast_plus" / "expert.py").read_bytes()


def test_standin_applies_speech_commands_effects(tmp_path):
    """s3prl's speech_commands EFFECTS on a stereo 22.05 kHz file: one channel (the mean),
    16 kHz (torchaudio's output length), -3 dB; an effect it lacks is refused by name."""
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, (22050, 2)).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, stereo, 22050, subtype="FLOAT")
    effects = [["channels", "1"], ["rate", "16000"], ["gain", "-3.0"]]  # s3prl's speech_commands EFFECTS
    wav, rate = torchaudio_standin.apply_effects_file(str(path), effects)
    assert rate == 16000 and wav.shape == (1, 16000)
    mono, _ = torchaudio_standin.apply_effects_file(str(path), [["channels", "1"], ["gain", "-3.0"]])
    np.testing.assert_allclose(mono[0].numpy(), stereo.mean(axis=1) * 10 ** (-3 / 20), atol=1e-6)
    loaded, loaded_rate = torchaudio_standin.load(str(path))
    assert loaded_rate == 22050 and loaded.shape == (1, 22050)
    with pytest.raises(NotImplementedError, match=r"clip\.wav.*'tempo'"):
        torchaudio_standin.apply_effects_file(str(path), [["tempo", "1.1"]])
    with pytest.raises(NotImplementedError, match="MelSpectrogram"):
        torchaudio_standin._module("torchaudio.transforms").MelSpectrogram(sample_rate=16000)


def test_standin_kaldi_fbank_is_torchaudios_at_the_builtin_upstreams_settings(kaldi_ref):
    """s3prl's built-in mae_ast upstream calls kaldi.fbank(wav, sample_frequency=16000,
    use_energy=False, num_mel_bins=128): the stand-in gives torchaudio's own result."""
    import torch

    wav = 0.3 * torch.randn(1, 24000, generator=torch.Generator().manual_seed(0))
    args = {"sample_frequency": 16000, "use_energy": False, "num_mel_bins": 128}
    ours, ref = torchaudio_standin.kaldi_fbank(wav, **args), kaldi_ref.fbank(wav, **args)
    assert ours.shape == ref.shape == (148, 128)
    torch.testing.assert_close(ours, ref, atol=2e-4, rtol=1e-4)
    with pytest.raises(NotImplementedError, match="dither"):
        torchaudio_standin.kaldi_fbank(wav, dither=1.0, **args)
