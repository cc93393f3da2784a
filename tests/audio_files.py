"""Audio files for tests, written one way: noise or a sine to a soundfile format, or
encoded with PyAV (``mae_ast.data.audio_io.encode_audio``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from mae_ast.data.audio_io import encode_audio


def noise_file(path: Path, samples: int, rate: int = 16000, seed: int = 0, level: float = 0.3) -> Path:
    """Uniform noise in [-level, level], written by soundfile (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).uniform(-level, level, samples).astype(np.float32), rate)
    return path


def sine(seconds: float, rate: int = 16000, freq: float = 440.0, level: float = 0.3) -> np.ndarray:
    return (level * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def encoded_file(path: Path, wav: np.ndarray, rate: int, codec: str = "libopus", container: str = "matroska") -> int:
    """``wav`` encoded with PyAV (Opus in Matroska by default); the samples written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return encode_audio(str(path), wav, rate, codec, container)
