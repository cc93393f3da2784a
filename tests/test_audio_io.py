"""Resampling from any rate in bounded time and memory, and read_audio's failure reports:
truncated files, errors while resampling, directories and missing paths."""

import importlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_files import encode_audio, sine
from conftest import DEMO, ROOT
from mae_ast.data import read_audio, read_manifest, resample
from mae_ast.data.audio_io import AudioError, SOUNDFILE_EXTENSIONS

# `mae_ast.data.resample` the attribute is the function; the module holds the internals.
resample_module = importlib.import_module("mae_ast.data.resample")

# Resamples a 4 s clip under a 3 GB address-space limit (the old kernel bank needed
# ~14 GB at 22051 Hz) and reports the time and peak RSS it took.
_BOUNDED_RUN = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import torch
from mae_ast.data import resample
rate = int(sys.argv[1])
wav = torch.randn(4 * rate, generator=torch.Generator().manual_seed(rate))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
out = resample(wav, rate, 16000)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "len": out.shape[-1], "rss_mb": peak / 1024,
                  "growth_mb": (peak - before) / 1024}))
"""


@pytest.mark.parametrize("rate", [22051, 44101])
def test_odd_rate_resamples_in_bounded_time_and_memory(rate):
    proc = subprocess.run([sys.executable, "-c", _BOUNDED_RUN, str(rate)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["len"] == math.ceil(4 * rate * 16000 / rate)
    assert result["seconds"] < 3, result
    assert result["growth_mb"] < 500, result


def _sine(rate: int, seconds: float, freq: float) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return torch.sin(2 * math.pi * freq * t)


@pytest.mark.parametrize("orig,new", [(22051, 16000), (44101, 16000), (16000, 22051)])
def test_odd_rate_resampling_matches_the_analytic_sine(orig, new):
    out = resample(_sine(orig, 2.0, 1000.0).float(), orig, new)
    assert out.dtype == torch.float32 and out.shape == (math.ceil(2 * orig * new / orig),)
    expected = _sine(new, 2.0, 1000.0)[: len(out)].float()
    edge = new // 10  # the zero padding beyond the clip's ends bends the first/last taps
    assert (out[edge:-edge] - expected[edge:-edge]).abs().max() < 1e-3


@pytest.mark.parametrize("orig,new", [(44100, 16000), (22050, 16000), (11025, 16000), (8000, 16000),
                                      (48000, 16000), (16000, 44100), (7, 3), (3, 7)])
def test_direct_sum_equals_the_kernel_bank(monkeypatch, orig, new):
    """The bounded path evaluates torchaudio's filter at the same points as the bank."""
    wav = torch.randn(2, 9001, generator=torch.Generator().manual_seed(orig))
    bank = resample(wav, orig, new)
    monkeypatch.setattr(resample_module, "_MAX_KERNEL_ELEMENTS", 0)
    direct = resample(wav, orig, new)
    assert direct.shape == bank.shape
    assert (direct - bank).abs().max() < 1e-5


@pytest.mark.parametrize("orig", [48000, 32000, 96000, 24000, 8000])
def test_more_kernels_for_few_phases_give_the_same_samples(monkeypatch, orig):
    """48 kHz -> 16 kHz has one filter phase; the bank is written for 16 (the same sum,
    shifted kernels). On the development CPU the float32 samples are the one-kernel
    bank's bit for bit; asserted to 1e-6, as another CPU's convolution may add in
    another order."""
    wav = torch.randn(2, 48013, generator=torch.Generator().manual_seed(orig))
    fast = resample(wav, orig, 16000)
    monkeypatch.setattr(resample_module, "_MIN_PHASES", 1)
    one_kernel = resample(wav, orig, 16000)
    assert fast.shape == one_kernel.shape and (fast - one_kernel).abs().max() <= 1e-6


def test_direct_sum_equals_torchaudio_above_the_bound():
    from test_fbank import _reference_resample

    ref_resample = _reference_resample()
    orig, new = 4001, 1600  # gcd 1: a 6.4M-weight bank, over the bound yet small enough for torchaudio
    assert resample_module.bank_elements(orig, new) > resample_module._MAX_KERNEL_ELEMENTS
    # float64: torchaudio's own float32 conv over 4033-tap kernels drifts by ~2e-4 here.
    wav = torch.randn(3, 12345, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = ref_resample(wav, orig, new)
    out = resample(wav, orig, new)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-9


def test_resample_keeps_float64_and_device():
    wav = torch.randn(3000, dtype=torch.float64)
    for orig in (44100, 22051):  # bank and direct paths
        out = resample(wav, orig, 16000)
        assert out.dtype == torch.float64 and out.device == wav.device


def test_an_exception_while_resampling_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "clip.flac"
    sf.write(path, 0.3 * np.sin(np.arange(44100) / 10).astype(np.float32), 44100)

    def broken(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(sys.modules["mae_ast.data.features"], "resample", broken)
    with pytest.raises(AudioError, match=r"clip\.flac: resampling 44100 Hz to 16000 Hz failed .*out of memory"):
        read_audio(str(path))


def _sine_mkv(path, seconds: float, rate: int = 48000) -> int:
    """Opus in Matroska, as AudioSet's downloads; returns the samples written."""
    return encode_audio(path, sine(seconds, rate), rate)


def _truncate(path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def test_truncated_wav_is_reported_with_the_manifest_length(tmp_path):
    path = tmp_path / "cut.wav"
    full = 4 * 16000
    sf.write(path, 0.3 * np.sin(np.arange(full) / 10).astype(np.float32), 16000)
    _truncate(path)
    data = path.read_bytes()  # the data chunk's header still claims `full` 16-bit frames
    assert int.from_bytes(data[data.index(b"data") + 4 :][:4], "little") == 2 * full
    assert len(read_audio(str(path))) < full  # without a length: decoded as before
    with pytest.raises(AudioError, match=rf"cut\.wav: truncated: decoded \d+ samples, the manifest says {full}"):
        read_audio(str(path), expected_samples=full)


def test_truncated_mkv_is_reported_with_the_manifest_length(tmp_path):
    path = tmp_path / "cut.mkv"
    full = _sine_mkv(path, 4.0)
    assert len(read_audio(str(path), 48000, expected_samples=full)) >= full  # intact: accepted
    _truncate(path)
    assert 0 < len(read_audio(str(path), 48000)) < full * 0.75
    with pytest.raises(AudioError, match=rf"cut\.mkv: truncated: decoded \d+ samples, the manifest says {full}"):
        read_audio(str(path), expected_samples=full)


def test_longer_or_slightly_short_audio_is_accepted(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, 0.3 * np.sin(np.arange(32000) / 10).astype(np.float32), 16000)
    read_audio(str(path), expected_samples=20000)  # longer than the manifest says: fine
    read_audio(str(path), expected_samples=32000 + 3200)  # 0.2 s short: within tolerance
    with pytest.raises(AudioError, match="truncated"):
        read_audio(str(path), expected_samples=32000 + 3201)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_demo_files_pass_with_their_manifest_lengths(split):
    manifest = read_manifest(str(DEMO / f"{split}.tsv"))
    kinds = set()
    for path, size in zip(manifest.paths, manifest.sizes):
        kinds.add(os.path.splitext(path)[1] in SOUNDFILE_EXTENSIONS)
        assert len(read_audio(path, expected_samples=int(size))) > 0
    assert split != "train" or kinds == {True, False}  # train holds both flac/wav and mkv


def test_directory_named_like_audio_is_not_a_missing_file(tmp_path):
    (tmp_path / "x.flac").mkdir()
    with pytest.raises(AudioError, match=r"x\.flac: is a directory, not an audio file"):
        read_audio(str(tmp_path / "x.flac"))


def test_missing_file_is_reported_as_not_found(tmp_path):
    with pytest.raises(AudioError, match=r"gone\.flac: file not found"):
        read_audio(str(tmp_path / "gone.flac"))


def _float_reference(frames) -> np.ndarray:
    """Decoded frames as PyAV's own resampler converts them to (packed) float, averaged
    over channels in float32: the waveform before the buffer path, computed apart."""
    import av

    to_float = av.AudioResampler(format="flt")
    out = [c for f in frames for c in to_float.resample(f)] + list(to_float.resample(None))
    rows = np.concatenate([c.to_ndarray().reshape(-1, c.layout.nb_channels).T for c in out], axis=1)
    mono = rows[0].copy()
    for row in rows[1:]:
        mono += row
    return mono / np.float32(len(rows)) if len(rows) > 1 else mono


@pytest.mark.parametrize("codec,container,ext,rate,channels", [
    ("libopus", "matroska", "mkv", 48000, 2),  # AudioSet's downloads: planar float
    ("aac", "mp4", "m4a", 44100, 2),
    ("libmp3lame", "mp3", "mp3", 44100, 2),
    ("flac", "matroska", "mka", 16000, 1),  # packed int16
    ("pcm_s16le", "matroska", "mkv", 16000, 2),  # packed int16, interleaved
    ("pcm_s32le", "matroska", "mkv", 22050, 2),
    ("alac", "mp4", "m4a", 44100, 2),  # planar int32
    ("pcm_f64le", "matroska", "mkv", 8000, 2),
    ("pcm_u8", "matroska", "mkv", 16000, 2),  # no direct conversion: the resampler path
    ("aac", "mp4", "m4a", 48000, 8),  # 7.1: PyAV lists a ninth plane that does not exist
    ("libopus", "matroska", "mkv", 48000, 6),
])
def test_pyav_decode_equals_the_resampler_path(tmp_path, codec, container, ext, rate, channels):
    import av

    from mae_ast.data.audio_io import decode_audio

    wav = (0.3 * np.random.default_rng(rate).standard_normal((rate, channels))).astype(np.float32)
    path = tmp_path / f"clip.{ext}"
    encode_audio(path, wav, rate, codec, container)
    with av.open(str(path)) as c:
        expected = _float_reference(c.decode(audio=0))
    out, got_rate = decode_audio(str(path))
    assert got_rate == rate
    np.testing.assert_array_equal(out.numpy(), expected)


def test_frames_that_change_format_or_channels_keep_their_order():
    """A stream whose frames change sample format or channel count (the fifo alone would
    not notice channels) is gathered run by run, in order, each run converted as PyAV's
    resampler converts it (u8 through the resampler itself)."""
    import av

    from mae_ast.data.audio_io import _FrameRuns, mix_to_mono

    rng = np.random.default_rng(0)

    def frame(fmt: str, layout: str, n: int):
        ch = 1 if layout == "mono" else 2
        x = rng.uniform(-0.5, 0.5, (ch, n)).astype(np.float32)
        if fmt.startswith("s16"):
            x = (x * 32767).astype(np.int16)
        elif fmt.startswith("u8"):
            x = (x * 127 + 128).astype(np.uint8)
        planar = fmt.endswith("p") or ch == 1
        f = av.AudioFrame.from_ndarray(x if planar else np.ascontiguousarray(x.T).reshape(1, -1),
                                       format=fmt, layout=layout)
        f.sample_rate = 16000
        return f

    specs = [("fltp", "stereo", 300), ("fltp", "stereo", 200), ("fltp", "mono", 250), ("s16", "stereo", 100),
             ("flt", "stereo", 120), ("u8", "stereo", 90), ("u8", "stereo", 30), ("fltp", "stereo", 60)]
    frames = [frame(*s) for s in specs]
    runs = [frames[0:2], frames[2:3], frames[3:4], frames[4:5], frames[5:7], frames[7:8]]
    gather = _FrameRuns()
    for f in frames:
        gather.add(f)
    chunks = gather.finish()
    assert [c.shape[1] for c in chunks] == [500, 250, 100, 120, 90, 30, 60]
    mixed = np.concatenate([mix_to_mono(c) for c in chunks])
    np.testing.assert_array_equal(mixed, np.concatenate([_float_reference(run) for run in runs]))


def test_a_frame_longer_than_the_buffer_and_empty_frames():
    """The first buffer is sized from the stated length; a frame past twice its size
    still fits, and a frame without samples is passed over."""
    import av

    from mae_ast.data.audio_io import _FrameRuns

    def frame(n: int):
        f = av.AudioFrame.from_ndarray(np.full((1, n), 0.25, np.float32), format="flt", layout="mono")
        f.sample_rate = 16000
        return f

    gather = _FrameRuns(expected_samples=0)
    for n in (1024, 48000, 0, 100):
        if n:
            gather.add(frame(n))
        else:
            empty = av.AudioFrame(format="flt", layout="mono", samples=0)
            empty.sample_rate = 16000
            gather.add(empty)
    (chunk,) = gather.finish()
    assert chunk.shape == (1, 1024 + 48000 + 100) and np.all(chunk == 0.25)

    # planar stereo grows along its sample axis, keeping what it held
    rows = [np.random.default_rng(n).uniform(-1, 1, (2, n)).astype(np.float32) for n in (1000, 40000, 5)]
    gather = _FrameRuns(expected_samples=0)
    for x in rows:
        f = av.AudioFrame.from_ndarray(x, format="fltp", layout="stereo")
        f.sample_rate = 16000
        gather.add(f)
    (chunk,) = gather.finish()
    np.testing.assert_array_equal(chunk, np.concatenate(rows, axis=1))
