"""A stand-in for the few torchaudio calls s3prl 0.4.18's runner makes, on this project's
decoder and resampler.

Why: s3prl imports torchaudio everywhere (``hub.py`` imports every upstream), but the
torchaudio wheels on PyPI link CUDA and fail to import beside a CPU torch, and the calls
s3prl makes (``set_audio_backend``, ``sox_effects``) were removed in torchaudio 2.9.

What it provides (``install()`` registers it as ``torchaudio`` in ``sys.modules``):
- ``set_audio_backend``: a no-op (decoding never goes through a backend here).
- ``load`` / ``info``: ``mae_ast.data.audio_io.decode_audio`` (soundfile or PyAV). Channels
  come back averaged to one, as every SUPERB and HEAR task uses them; a file of digital
  silence is refused by the decoder, naming the file.
- ``sox_effects.apply_effects_file`` / ``apply_effects_tensor``: the effects s3prl's tasks
  ask for: ``channels 1``, ``rate N`` (our torchaudio-equal resampler), ``gain dB``.
- ``transforms.Resample`` (emotion's dataset): the same resampler.
- ``compliance.kaldi.fbank`` at the settings s3prl's built-in ``mae_ast`` upstream uses
  (torchaudio's defaults, no energy): ``mae_ast.data.fbank.fbank``, which reproduces it, so
  that upstream can be run beside ours for comparison.
Anything else (``transforms.MelSpectrogram``, ``kaldi.mfcc``, ...) exists so the
imports succeed, and raises ``NotImplementedError`` naming itself when used: only other
upstreams call them, and they are not what this project runs.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from dataclasses import dataclass

import torch

from mae_ast.data.fbank import fbank as _log_mel_fbank
from mae_ast.data.audio_io import decode_audio
from mae_ast.data.resample import resample

__version__ = "0.0+mae_ast.standin"


def set_audio_backend(backend: str | None) -> None:
    """No-op: removed in torchaudio 2.9, and the decoder here needs no backend."""


def get_audio_backend() -> str:
    return "mae_ast"


def load(path, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
         channels_first: bool = True, **_: object) -> tuple[torch.Tensor, int]:
    """(waveform ``(1, n)`` float32 in [-1, 1], rate) of ``path``, channels averaged."""
    wav, rate = decode_audio(str(path))
    stop = None if num_frames < 0 else frame_offset + num_frames
    wav = wav[frame_offset:stop].unsqueeze(0)
    return (wav if channels_first else wav.T), rate


@dataclass
class AudioMetaData:
    sample_rate: int
    num_frames: int
    num_channels: int
    bits_per_sample: int = 32
    encoding: str = "PCM_F"


def info(path, **_: object) -> AudioMetaData:
    """Rate and length as decoded (so it always agrees with ``load``)."""
    wav, rate = decode_audio(str(path))
    return AudioMetaData(sample_rate=rate, num_frames=wav.numel(), num_channels=1)


def _apply(wav: torch.Tensor, rate: int, effects: list[list[str]], where: str) -> tuple[torch.Tensor, int]:
    for effect in effects:
        name, args = effect[0], effect[1:]
        if name == "channels" and args == ["1"]:
            wav = wav.mean(dim=0, keepdim=True)
        elif name == "rate" and len(args) == 1:
            new = int(float(args[0]))
            wav, rate = resample(wav, rate, new), new
        elif name == "gain" and len(args) == 1:
            wav = wav * 10.0 ** (float(args[0]) / 20.0)
        else:
            raise NotImplementedError(
                f"{where}: sox effect {effect} is not provided by the torchaudio stand-in "
                "(kits/torchaudio_standin.py has: channels 1, rate N, gain dB)"
            )
    return wav, rate


def apply_effects_file(path, effects: list[list[str]], normalize: bool = True, channels_first: bool = True,
                       **_: object) -> tuple[torch.Tensor, int]:
    wav, rate = load(path)
    wav, rate = _apply(wav, rate, effects, str(path))
    return (wav if channels_first else wav.T), rate


def apply_effects_tensor(tensor: torch.Tensor, sample_rate: int, effects: list[list[str]],
                         channels_first: bool = True) -> tuple[torch.Tensor, int]:
    wav = tensor if channels_first else tensor.T
    wav, rate = _apply(wav.float(), sample_rate, effects, "apply_effects_tensor")
    return (wav if channels_first else wav.T), rate


class Resample(torch.nn.Module):
    def __init__(self, orig_freq: int = 16000, new_freq: int = 16000, **_: object) -> None:
        super().__init__()
        self.orig_freq, self.new_freq = int(orig_freq), int(new_freq)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return resample(waveform, self.orig_freq, self.new_freq)


# torchaudio's kaldi.fbank defaults that mae_ast.data.fbank implements; others are refused.
_KALDI_DEFAULTS = {"dither": 0.0, "energy_floor": 1.0, "remove_dc_offset": True, "round_to_power_of_two": True,
                   "snip_edges": True, "use_energy": False, "use_log_fbank": True, "use_power": True,
                   "window_type": "povey", "htk_compat": False, "raw_energy": True, "subtract_mean": False,
                   "channel": -1, "min_duration": 0.0, "vtln_warp": 1.0}


def kaldi_fbank(waveform: torch.Tensor, num_mel_bins: int = 23, sample_frequency: float = 16000.0,
                frame_length: float = 25.0, frame_shift: float = 10.0, low_freq: float = 20.0,
                high_freq: float = 0.0, preemphasis_coefficient: float = 0.97, **options: object) -> torch.Tensor:
    """torchaudio.compliance.kaldi.fbank of channel 0 of ``waveform`` ``(C, N)``: ``(frames, bins)``."""
    other = {k: v for k, v in options.items() if _KALDI_DEFAULTS.get(k, object()) != v}
    if other:
        raise NotImplementedError(f"kaldi.fbank options {other} are not provided by the torchaudio stand-in")
    return _log_mel_fbank(waveform[0], num_mel_bins, int(sample_frequency), frame_length, frame_shift,
                           preemphasis_coefficient, low_freq, high_freq)


def _missing(qualname: str) -> type:
    """A class that exists (so ``from torchaudio.x import Name`` works) and refuses use."""

    def refuse(*_: object, **__: object) -> None:
        raise NotImplementedError(
            f"{qualname} is not provided by the torchaudio stand-in (kits/torchaudio_standin.py); "
            "it only covers what s3prl's runner and the mae_ast_plus upstream use"
        )

    return type(qualname.rsplit(".", 1)[-1], (), {"__init__": refuse, "__call__": refuse})


def _module(name: str, **members: object) -> types.ModuleType:
    module = types.ModuleType(name)
    # A spec, so importlib.util.find_spec(name) answers instead of raising.
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=True)
    module.__path__ = []
    module.__dict__.update(members)
    module.__getattr__ = lambda attr: _missing(f"{name}.{attr}") if not attr.startswith("__") else _no(name, attr)
    return module


def _no(name: str, attr: str):
    raise AttributeError(f"module {name!r} has no attribute {attr!r}")


def install() -> types.ModuleType:
    """Register the stand-in as ``torchaudio`` (and its submodules) for this process."""
    sox = _module("torchaudio.sox_effects", apply_effects_file=apply_effects_file,
                  apply_effects_tensor=apply_effects_tensor)
    transforms = _module("torchaudio.transforms", Resample=Resample)
    functional = _module("torchaudio.functional", resample=resample)
    kaldi = _module("torchaudio.compliance.kaldi", fbank=kaldi_fbank)
    compliance = _module("torchaudio.compliance", kaldi=kaldi)
    root = _module(
        "torchaudio", __version__=__version__, set_audio_backend=set_audio_backend,
        get_audio_backend=get_audio_backend, load=load, info=info, AudioMetaData=AudioMetaData,
        sox_effects=sox, transforms=transforms, functional=functional, compliance=compliance,
    )
    for module in (root, sox, transforms, functional, compliance, kaldi):
        sys.modules[module.__name__] = module
    return root
