"""Decoding audio files into mono float32 waveforms at their own rate (resampling is
``features.read_audio``'s).

Like the original: ``.mkv`` (and other containers) are decoded with PyAV, all frames of
the first audio stream, channels averaged; everything soundfile knows is read with
soundfile. One difference, on purpose: PyAV frames are converted to float per channel
first (as libswresample converts them), so packed integer streams are de-interleaved and
scaled to [-1, 1] (the original would have averaged interleaved int16 samples as one
channel).

Every failure raises ``AudioError`` naming the file and the reason; an exception of any
kind while decoding becomes one, so a training run skips the file by name.

Truncation: a cut ``.wav`` (its header still claims the full length) or ``.mkv`` decodes
to a shorter clip without any error, so ``decode_audio`` can compare the decoded length
with the manifest's (``expected_samples``, at the file's own rate, before resampling). It
is accepted up to ``max(2% of expected, 0.2 s)`` short, and any amount longer. Why that
much: a length taken from a container header rather than from decoding can overstate the
audio (an AAC Matroska DURATION tag by 2.7%, a 1 s AAC/Opus mkv by up to 0.04 s); a
cut-off download misses far more.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch


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
    """The average of ``(channels, samples)`` rows as float32 ``(samples,)``, times
    ``scale`` (1 / 32768 for int16 rows). Rows are added one by one: the sums ``mean``
    makes, without numpy reducing along a strided axis (for 10 s of 44.1 kHz stereo
    read as ``(samples, channels)``, ``mean(axis=1)`` took 5.7 ms, this 0.2 ms)."""
    mono = samples[0].astype(np.float32)  # a copy, also for float32 rows
    for row in samples[1:]:
        mono += row
    if scale != 1.0:
        mono *= np.float32(scale)
    if len(samples) > 1:
        mono /= np.float32(len(samples))
    return mono


def _read_soundfile(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            # 16-bit files are read as the integers they hold (x / 32768 in float32 is
            # exact, so the waveform is the one a float read gives, without libsndfile's
            # conversion pass); anything else as float32.
            if f.subtype == "PCM_16":
                raw, scale = f.read(dtype="int16", always_2d=True), 1 / 32768
            else:
                raw, scale = f.read(dtype="float32", always_2d=True), 1.0
            rate = f.samplerate
    except Exception as err:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError(path, f"soundfile could not decode it ({err})") from err
    return mix_to_mono(raw.T, scale), rate


# PyAV sample formats read without a resampler: numpy dtype of the samples and the scale
# to [-1, 1]. These are the conversions libswresample applies to reach float, so the
# waveform is the one the resampler gave; other formats still go through it.
_DIRECT_FORMATS = {"flt": (np.float32, 1.0), "dbl": (np.float64, 1.0), "s16": (np.int16, 1 / 32768),
                   "s32": (np.int32, 1 / 2**31)}


def _base_format(frame) -> str:
    name = frame.format.name
    return name[:-1] if name.endswith("p") else name


# Longest stretch the first buffer of a PyAV read is sized for, in seconds at the stream's
# rate; a longer stream grows it. A header claiming hours must not reserve gigabytes.
_PREALLOCATE_MAX_S = 600


def _packed_rows(frame) -> np.ndarray:
    """``(channels, samples)`` view of a packed frame. Packed frames only: PyAV's
    ``planes`` (and so ``to_ndarray``) reads past the data pointers of an 8-channel
    planar frame and finds planes that do not exist."""
    return frame.to_ndarray().reshape(-1, frame.layout.nb_channels).T


class _FrameRuns:
    """Decoded frames gathered into ``(channels, samples)`` chunks, one per run of
    frames of the same kind (format, channels, rate).

    A run in a direct format is copied plane by plane into one growing numpy buffer:
    a numpy array per 20 ms Opus frame and their concatenation cost 6 of the 14 ms it
    takes to decode a 10 s clip (an ``av.AudioFifo`` measured no better). A run in
    another format goes through an ``AudioResampler`` to packed float (one per run: a
    resampler refuses a frame whose kind differs from its first).
    """

    def __init__(self, expected_samples: int = 0) -> None:
        self.chunks: list[np.ndarray] = []
        self._expected = expected_samples
        self._kind: tuple | None = None
        self._buf: np.ndarray | None = None  # (channels, capacity), or (capacity, channels) when packed
        self._planar = True
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
        if _base_format(frame) not in _DIRECT_FORMATS:
            import av

            self._to_float = av.AudioResampler(format="flt")
            return
        dtype, self._scale = _DIRECT_FORMATS[_base_format(frame)]
        expected = min(self._expected, _PREALLOCATE_MAX_S * frame.sample_rate)
        channels, capacity = kind[1], max(expected, frame.samples) + frame.sample_rate
        self._planar = frame.format.is_planar
        self._buf = np.empty((channels, capacity) if self._planar else (capacity, channels), dtype)
        self._pos = 0

    def _filled(self, buf: np.ndarray, stop: int) -> np.ndarray:
        """The first ``stop`` samples of a run buffer, in the buffer's own layout."""
        return buf[:, :stop] if self._planar else buf[:stop]

    def _copy(self, frame) -> None:
        n, pos, buf = frame.samples, self._pos, self._buf
        capacity = buf.shape[1] if self._planar else buf.shape[0]
        if pos + n > capacity:
            capacity = max(2 * capacity, pos + n)
            channels = buf.shape[0] if self._planar else buf.shape[1]
            grown = np.empty((channels, capacity) if self._planar else (capacity, channels), buf.dtype)
            self._filled(grown, pos)[...] = self._filled(buf, pos)
            buf = self._buf = grown
        if self._planar:  # only the frame's own planes (see _packed_rows)
            for ch, plane in enumerate(frame.planes[: buf.shape[0]]):
                buf[ch, pos : pos + n] = np.frombuffer(plane, buf.dtype, n)
        else:  # one plane of interleaved samples
            buf[pos : pos + n] = np.frombuffer(frame.planes[0], buf.dtype, n * buf.shape[1]).reshape(n, -1)
        self._pos = pos + n

    def _end_run(self) -> None:
        if self._buf is not None and self._pos:
            rows = self._filled(self._buf, self._pos)
            rows = rows if self._planar else rows.T
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


def _read_pyav(path: str, expected_samples: int | None = None) -> tuple[np.ndarray, int]:
    """Mono waveform and rate. ``expected_samples`` (the manifest's, else the container's
    stated length) only sizes the first buffer."""
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(path, "container has no audio stream")
            stream = container.streams.audio[0]
            runs, rate = _FrameRuns(expected_samples or _stated_samples(container, stream)), None
            for frame in container.decode(stream):
                rate = rate or frame.sample_rate
                runs.add(frame)
            chunks = runs.finish()
    except AudioError:
        raise
    except Exception as err:  # av.error.* and decoder failures
        raise AudioError(path, f"PyAV could not decode it ({err})") from err
    if not chunks:
        raise AudioError(path, "audio stream holds no samples")
    # each run mixed on its own: runs may differ in channel count
    mono = [mix_to_mono(c.astype(np.float32, copy=False)) for c in chunks]
    return (mono[0] if len(mono) == 1 else np.concatenate(mono)), rate


# Truncation tolerance (see the module docstring): relative, and absolute in seconds.
TRUNCATION_TOLERANCE = 0.02
TRUNCATION_TOLERANCE_S = 0.2


@contextlib.contextmanager
def named_failure(path: str, doing: str) -> Iterator[None]:
    """Turn any exception from the body into an ``AudioError`` naming ``path``."""
    try:
        yield
    except AudioError:
        raise
    except Exception as err:  # decoder bugs, RuntimeError/MemoryError from torch, ...
        raise AudioError(path, f"{doing} failed ({type(err).__name__}: {err})") from err


def _check_path(path: str) -> None:
    if os.path.isdir(path):
        raise AudioError(path, "is a directory, not an audio file")
    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if not os.path.isfile(path):
        raise AudioError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "file is empty (0 bytes)")


def _check_length(path: str, decoded: int, expected: int, rate: int) -> None:
    """Raise if ``decoded`` falls short of the manifest's ``expected`` beyond the tolerance."""
    allowed = max(TRUNCATION_TOLERANCE * expected, TRUNCATION_TOLERANCE_S * rate)
    if expected - decoded > allowed:
        raise AudioError(
            path,
            f"truncated: decoded {decoded} samples, the manifest says {expected} "
            f"({decoded / rate:.2f} s of {expected / rate:.2f} s at {rate} Hz)",
        )


def _check_samples(path: str, wav: np.ndarray, allow_silence: bool = False) -> None:
    if wav.size == 0:
        raise AudioError(path, "file holds no samples")
    if not np.isfinite(wav).all():
        raise AudioError(path, "samples contain NaN or inf")
    if not allow_silence and not np.any(wav):
        # Every fbank bin would sit at the log floor: nothing to learn, and a clip that
        # is all zeros is almost always a failed download or decode. Evaluation allows it:
        # a silent test clip (AudioSet has them) is input to score, not to leave out.
        raise AudioError(path, "digital silence (all samples are zero)")


def decode_audio(path: str, expected_samples: int | None = None,
                 allow_silence: bool = False) -> tuple[torch.Tensor, int]:
    """Mono float32 waveform of ``path`` at the file's own rate, scale [-1, 1], and that
    rate (``features.read_audio`` resamples it; ``task.features_on_device`` resamples
    whole batches on the training device instead).

    ``expected_samples``: the manifest's length at the file's own rate; a decoded clip
    shorter than that beyond the tolerance raises ``AudioError("truncated: ...")``.
    """
    _check_path(path)
    ext = os.path.splitext(path)[1].lower()
    with named_failure(path, "decoding"):
        wav, rate = _read_soundfile(path) if ext in SOUNDFILE_EXTENSIONS else _read_pyav(path, expected_samples)
        _check_samples(path, wav, allow_silence)
        if expected_samples is not None:
            _check_length(path, wav.size, int(expected_samples), int(rate))
        return torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), int(rate)
