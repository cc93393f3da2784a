"""Audio files for tests, benchmarks and the demo set, written one way: noise or a sine to
a soundfile format, or encoded with PyAV (``encode_audio``). Outside the package, since
only generated data needs an encoder; bench/ and scripts/ import it as
``tests.audio_files`` with the repository root on ``PYTHONPATH``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def noise_file(path: Path, samples: int, rate: int = 16000, seed: int = 0, level: float = 0.3) -> Path:
    """Uniform noise in [-level, level], written by soundfile (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).uniform(-level, level, samples).astype(np.float32), rate)
    return path


def sine(seconds: float, rate: int = 16000, freq: float = 440.0, level: float = 0.3) -> np.ndarray:
    return (level * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def _to_sample_format(chunk: np.ndarray, name: str) -> np.ndarray:
    """Float samples in [-1, 1] as the integer or float type of PyAV format ``name``."""
    base = name.rstrip("p")
    if base == "u8":
        return np.round(np.clip(chunk, -1, 1) * 127 + 128).astype(np.uint8)
    if base in ("s16", "s32"):
        bits = 16 if base == "s16" else 32
        return (np.clip(chunk, -1, 1).astype(np.float64) * (2 ** (bits - 1) - 1)).astype(f"int{bits}")
    return chunk.astype(np.float64 if base == "dbl" else np.float32)


def encode_audio(path: str | Path, wav: np.ndarray, rate: int, codec: str = "libopus", container: str = "matroska",
                 frame_samples: int = 960) -> int:
    """Write ``wav`` (float in [-1, 1]; ``(N,)`` mono or ``(N, channels)``) with PyAV's
    ``codec`` in ``container`` (Opus in Matroska: AudioSet's downloads), its folder made if
    missing; returns the samples written. Frames of ``frame_samples`` (Opus takes at most
    20 ms at 48 kHz), converted to the sample format and layout the encoder asks for."""
    import av

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    wav = np.asarray(wav, dtype=np.float32)
    wav = wav[:, None] if wav.ndim == 1 else wav
    layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}[wav.shape[1]]
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        name = stream.codec_context.format.name
        # PyAV cannot fill an 8-channel planar frame (it finds a ninth plane): give such
        # encoders packed frames of the same samples, which PyAV converts to planar.
        planar = name.endswith("p") and wav.shape[1] <= 2
        name = name if planar else name.rstrip("p")
        for start in range(0, len(wav), frame_samples):
            chunk = wav[start : start + frame_samples]
            chunk = _to_sample_format(chunk, name)
            # planar formats take (channels, samples); packed ones (1, samples * channels)
            chunk = np.ascontiguousarray(chunk.T) if planar else chunk.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format=name, layout=layout)
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return len(wav)
