"""The fbank and resampler against torchaudio's own code, and their contracts."""

import ast
import math
from typing import Optional

import pytest
import torch

from conftest import DEMO, REF_DIR
from mae_ast.data import fbank, read_audio, resample
from mae_ast.data.features import FeatureSpec


@pytest.mark.parametrize("num_samples", [400, 16000, 160123])
def test_fbank_equals_torchaudio_kaldi_fbank(kaldi_ref, num_samples):
    wav = torch.randn(num_samples, generator=torch.Generator().manual_seed(num_samples)) * 0.1
    ref = kaldi_ref.fbank(wav.unsqueeze(0), sample_frequency=16000, use_energy=False, num_mel_bins=128)
    out = fbank(wav)
    assert out.shape == ref.shape == (FeatureSpec().frames(num_samples), 128)
    assert (out - ref).abs().max() < 1e-3


def test_fbank_equals_torchaudio_on_real_speech(kaldi_ref):
    wav = read_audio(str(DEMO / "audio" / "speech_00.flac"))
    ref = kaldi_ref.fbank(wav.unsqueeze(0), sample_frequency=16000, use_energy=False, num_mel_bins=128)
    assert (fbank(wav) - ref).abs().max() < 1e-3
    # Energies are floored at float eps before the log, as torchaudio does.
    floor = math.log(torch.finfo(torch.float32).eps)
    assert fbank(wav).min() >= floor - 1e-5 and fbank(torch.zeros(1600)).max() <= floor + 1e-5


def test_fbank_batched_equals_per_clip():
    wavs = torch.randn(3, 8000, generator=torch.Generator().manual_seed(1))
    batched = fbank(wavs)
    for i in range(3):
        assert torch.equal(batched[i], fbank(wavs[i]))


def test_fbank_rejects_audio_shorter_than_a_window():
    with pytest.raises(ValueError, match="shorter than one 400-sample window"):
        fbank(torch.zeros(399))


def _reference_resample():
    path = REF_DIR / "functional.py"
    try:
        import torchaudio.functional as F

        return F.resample
    except Exception:
        pass
    if not path.exists():
        pytest.skip("no torchaudio reference available")
    # Execute only the three resampling functions of torchaudio's functional.py.
    tree = ast.parse(path.read_text())
    names = {"_get_sinc_resample_kernel", "_apply_sinc_resample_kernel", "resample"}
    ns = {"torch": torch, "math": math, "Optional": Optional, "Tensor": torch.Tensor,
          "_CPU": torch.device("cpu"), "warnings": __import__("warnings")}
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    exec(compile(ast.Module(body, []), str(path), "exec"), ns)
    return ns["resample"]


@pytest.mark.parametrize("orig", [44100, 48000, 22050, 8000])
def test_resample_equals_torchaudio(orig):
    ref_resample = _reference_resample()
    wav = torch.randn(2, 9001, generator=torch.Generator().manual_seed(orig))
    ref = ref_resample(wav, orig, 16000)
    out = resample(wav, orig, 16000)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-4


def test_resample_keeps_a_tone_in_band():
    t = torch.arange(44100 * 2) / 44100
    tone = torch.sin(2 * math.pi * 1000 * t)
    out = resample(tone, 44100, 16000)
    assert out.shape[-1] == math.ceil(len(tone) * 16000 / 44100)
    spectrum = torch.fft.rfft(out[2000:-2000]).abs()
    peak_hz = spectrum.argmax().item() * 16000 / len(out[2000:-2000])
    assert abs(peak_hz - 1000) < 2
    assert abs(out[2000:-2000].pow(2).mean().sqrt().item() - 1 / math.sqrt(2)) < 0.01
