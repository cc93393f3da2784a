"""Reading audio files into mono float32 waveforms at the task's sample rate.

Like the original: ``.mkv`` (and other containers) are decoded with PyAV, all frames of
the first audio stream, channels averaged; everything soundfile knows is read with
soundfile. One difference, on purpose: PyAV frames are converted to planar float first,
so packed integer streams are de-interleaved and scaled to [-1, 1] (the original would
have averaged interleaved int16 samples as one channel).

Every failure raises ``AudioError`` naming the file and the reason.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .resample import resample

# Extensions read with soundfile; anything else goes through PyAV (mkv, mp4, webm, m4a...).
SOUNDFILE_EXTENSIONS = frozenset({".flac", ".wav", ".ogg", ".aiff", ".aif", ".au", ".w64", ".caf"})
# Every extension the tools treat as audio (the one list: manifest, extract, prepare, predict).
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | frozenset(
    {".opus", ".mp3", ".m4a", ".aac", ".mkv", ".mka", ".mp4", ".webm"}
)


class AudioError(RuntimeError):
    """A file that cannot serve as training audio; ``path`` and ``reason`` say why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _read_soundfile(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        wav, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError(path, f"soundfile could not decode it ({err})") from err
    return wav.mean(axis=1), rate


def _read_pyav(path: str) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(path, "container has no audio stream")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp")
            chunks, rate = [], None
            for frame in container.decode(stream):
                rate = rate or frame.sample_rate
                for converted in to_float.resample(frame):
                    chunks.append(converted.to_ndarray())
            for converted in to_float.resample(None):  # flush
                chunks.append(converted.to_ndarray())
    except AudioError:
        raise
    except Exception as err:  # av.error.* and decoder failures
        raise AudioError(path, f"PyAV could not decode it ({err})") from err
    if not chunks:
        raise AudioError(path, "audio stream holds no samples")
    return np.concatenate(chunks, axis=1).mean(axis=0), rate


def read_audio(path: str, sample_rate: int = 16000) -> torch.Tensor:
    """Mono float32 waveform of ``path`` resampled to ``sample_rate``, scale [-1, 1]."""
    if not os.path.isfile(path):
        raise AudioError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    ext = os.path.splitext(path)[1].lower()
    wav, rate = _read_soundfile(path) if ext in SOUNDFILE_EXTENSIONS else _read_pyav(path)
    if wav.size == 0:
        raise AudioError(path, "file holds no samples")
    if not np.isfinite(wav).all():
        raise AudioError(path, "samples contain NaN or inf")
    if not np.any(wav):
        # Every fbank bin would sit at the log floor: nothing to learn, and a clip that
        # is all zeros is almost always a failed download or decode.
        raise AudioError(path, "digital silence (all samples are zero)")
    wav = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    return resample(wav, int(rate), sample_rate)
