"""Decoding audio files into mono float32 waveforms at their own rate: soundfile for what
it knows, PyAV (first audio stream) for the rest (README, "Faithfulness notes"). Every
failure is an ``AudioError`` naming the file, so a training run skips it by name. A cut
``.wav`` or ``.mkv`` decodes short without error, so the length is checked against the
manifest's, up to ``max(2%, 0.2 s)`` short: a header can overstate it (AAC Matroska by 2.7%).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch

from .fbank import check_clip


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


def mix_to_mono(samples: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The average of ``(channels, samples)`` rows as float32 ``(samples,)``, times ``scale``.
    Rows are added one by one: ``mean(axis=1)`` on a strided axis was 30x slower."""
    mono = samples[0].astype(np.float32)  # a copy, also for float32 rows
    for row in samples[1:]:
        mono += row
    if scale != 1.0:
        mono *= np.float32(scale)
    if len(samples) > 1:
        mono /= np.float32(len(samples))
    return mono


@contextlib.contextmanager
def named_failure(path: str, doing: str, decoder: str | None = None) -> Iterator[None]:
    """Turn any exception from the body into an ``AudioError`` naming ``path``: "``decoder``
    could not ``doing``", else "``doing`` failed"."""
    try:
        yield
    except AudioError:
        raise
    except Exception as err:  # decoder bugs, RuntimeError/MemoryError from torch, ...
        reason = f"{decoder} could not {doing} ({err})" if decoder else f"{doing} failed ({type(err).__name__}: {err})"
        raise AudioError(path, reason) from err


def _read_soundfile(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with named_failure(path, "decode it", "soundfile"), sf.SoundFile(path) as f:
        # int16 / 32768 is exact in float32: a float read's waveform, without its conversion pass
        int16 = f.subtype == "PCM_16"
        raw = f.read(dtype="int16" if int16 else "float32", always_2d=True)
        rate = f.samplerate
    return mix_to_mono(raw.T, 1 / 32768 if int16 else 1.0), rate


# PyAV sample formats read without a resampler (dtype, scale to [-1, 1]): libswresample's own conversions.
_DIRECT_FORMATS = {"flt": (np.float32, 1.0), "dbl": (np.float64, 1.0), "s16": (np.int16, 1 / 32768),
                   "s32": (np.int32, 1 / 2**31)}
# Most seconds the first PyAV buffer is sized for: a header claiming hours must not reserve gigabytes.
_PREALLOCATE_MAX_S = 600


def _packed_rows(frame) -> np.ndarray:
    """``(channels, samples)`` view of a packed frame (only: PyAV's ``to_ndarray`` reads
    planes that do not exist of an 8-channel planar frame)."""
    return frame.to_ndarray().reshape(-1, frame.layout.nb_channels).T


class _FrameRuns:
    """Decoded frames gathered into ``(channels, samples)`` chunks, one per run of frames
    of the same (format, channels, rate). A direct-format run is copied into one growing
    buffer (an array per Opus frame cost 6 of 14 ms per 10 s clip); others go through an
    ``AudioResampler`` (one per run: it refuses a frame of another kind)."""

    def __init__(self, expected_samples: int = 0) -> None:
        self.chunks: list[np.ndarray] = []
        self._expected = expected_samples
        self._kind: tuple | None = None
        self._buf: np.ndarray | None = None  # (channels, capacity)
        self._scale = 1.0
        self._pos = 0
        self._to_float = None

    def add(self, frame) -> None:
        if not frame.samples:
            return
        kind = (frame.format.name, frame.layout.nb_channels, frame.sample_rate)
        if kind != self._kind:
            self._end_run()
            self._start_run(frame, kind)
        if self._buf is not None:
            self._copy(frame)
        else:
            self.chunks.extend(_packed_rows(c) for c in self._to_float.resample(frame))

    def _start_run(self, frame, kind: tuple) -> None:
        self._kind = kind
        base = frame.format.name.removesuffix("p")  # planar "fltp" -> "flt"
        if base not in _DIRECT_FORMATS:
            import av

            self._to_float = av.AudioResampler(format="flt")
            return
        dtype, self._scale = _DIRECT_FORMATS[base]
        expected = min(self._expected, _PREALLOCATE_MAX_S * frame.sample_rate)
        self._buf = np.empty((kind[1], max(expected, frame.samples) + frame.sample_rate), dtype)
        self._pos = 0

    def _copy(self, frame) -> None:
        n, pos, buf = frame.samples, self._pos, self._buf
        if pos + n > buf.shape[1]:
            grown = np.empty((buf.shape[0], max(2 * buf.shape[1], pos + n)), buf.dtype)
            grown[:, :pos] = buf[:, :pos]
            buf = self._buf = grown
        if frame.format.is_planar:  # only the frame's own planes (see _packed_rows)
            for ch, plane in enumerate(frame.planes[: buf.shape[0]]):
                buf[ch, pos : pos + n] = np.frombuffer(plane, buf.dtype, n)
        else:  # one plane of interleaved samples
            buf[:, pos : pos + n] = np.frombuffer(frame.planes[0], buf.dtype, n * buf.shape[0]).reshape(n, -1).T
        self._pos = pos + n

    def _end_run(self) -> None:
        if self._buf is not None and self._pos:
            rows = self._buf[:, : self._pos]
            self.chunks.append(rows if self._scale == 1.0 else rows * np.float32(self._scale))
        if self._to_float is not None:
            self.chunks.extend(_packed_rows(c) for c in self._to_float.resample(None))  # flush
        self._buf = self._to_float = None

    def finish(self) -> list[np.ndarray]:
        self._end_run()
        return self.chunks


def _stated_samples(container, stream) -> int:
    """The stream's length in samples as the container states it (0 when it does not)."""
    if stream.duration and stream.time_base:
        return int(stream.duration * stream.time_base * (stream.rate or 0))
    if container.duration:
        return int(container.duration / 1_000_000 * (stream.rate or 0))
    return 0


@contextlib.contextmanager
def pyav_stream(path: str, doing: str) -> Iterator[tuple]:
    """``(container, first audio stream)`` of ``path``; failures as ``named_failure(path, doing, "PyAV")``."""
    import av

    with named_failure(path, doing, "PyAV"), av.open(path, metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioError(path, "container has no audio stream")
        yield container, container.streams.audio[0]


def _read_pyav(path: str, expected_samples: int | None = None) -> tuple[np.ndarray, int]:
    """Mono waveform and rate; ``expected_samples`` only sizes the first buffer."""
    with pyav_stream(path, "decode it") as (container, stream):
        runs, rate = _FrameRuns(expected_samples or _stated_samples(container, stream)), None
        for frame in container.decode(stream):
            rate = rate or frame.sample_rate
            runs.add(frame)
        chunks = runs.finish()
    if not chunks:
        raise AudioError(path, "audio stream holds no samples")
    # each run mixed on its own: runs may differ in channel count
    mono = [mix_to_mono(c.astype(np.float32, copy=False)) for c in chunks]
    return (mono[0] if len(mono) == 1 else np.concatenate(mono)), rate


TRUNCATION_TOLERANCE = 0.02  # relative, and in seconds (module docstring)
TRUNCATION_TOLERANCE_S = 0.2


def check_path(path: str) -> None:
    if os.path.isdir(path):
        raise AudioError(path, "is a directory, not an audio file")
    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if not os.path.isfile(path):
        raise AudioError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "file is empty (0 bytes)")


def decode_audio(path: str, expected_samples: int | None = None,
                 allow_silence: bool = False) -> tuple[torch.Tensor, int]:
    """Mono float32 waveform of ``path`` in [-1, 1] at the file's own rate, and that rate;
    samples off the input contract (``fbank.check_clip``) raise ``AudioError``. ``expected_samples``:
    the manifest's length at that rate; a clip shorter beyond the tolerance raises
    ``AudioError("truncated: ...")``."""
    check_path(path)
    ext = os.path.splitext(path)[1].lower()
    with named_failure(path, "decoding"):
        wav, rate = _read_soundfile(path) if ext in SOUNDFILE_EXTENSIONS else _read_pyav(path, expected_samples)
        if wav.size == 0:
            raise AudioError(path, "file holds no samples")
        waveform = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))  # no copy: float32 already
        try:  # a float WAV of int16-scale samples decodes without error, its features ~90 dB too hot
            check_clip(waveform, path)
        except ValueError as err:
            reason = str(err).removeprefix(f"{path}: ")
            # check_clip's own fix (divide by 32768) is for arrays; a file is fixed where it was written
            fix = ": re-save the file as PCM or scaled float" if "[-1, 1] scale" in reason else ""
            raise AudioError(path, reason + fix) from None
        if not allow_silence and not np.any(wav):
            # Nothing to learn, and almost always a failed download; evaluation scores silent clips.
            raise AudioError(path, "digital silence (all samples are zero)")
        expected = wav.size if expected_samples is None else int(expected_samples)
        if expected - wav.size > max(TRUNCATION_TOLERANCE * expected, TRUNCATION_TOLERANCE_S * rate):
            raise AudioError(path, f"truncated: decoded {wav.size} samples, the manifest says {expected} "
                                   f"({wav.size / rate:.2f} s of {expected / rate:.2f} s at {rate} Hz)")
        return waveform, int(rate)
