"""Run s3prl 0.4.18's own ``run_downstream.py``, unchanged, on today's torch.

Usage: ``python kits/s3prl_run.py RUN_DOWNSTREAM_ARGS...`` (from the s3prl package folder,
where ``run_downstream.py`` expects to be run). ``scripts/superb.sh`` calls it.

Two fixes for APIs that moved under s3prl, each applied here before the script runs:
- torchaudio: the stand-in in ``torchaudio_standin.py`` (no usable wheel beside a CPU torch;
  ``set_audio_backend`` and ``sox_effects`` are gone from torchaudio >= 2.9).
- torch >= 2.6 loads with ``weights_only=True``: s3prl's checkpoints hold its
  ``argparse.Namespace`` of arguments, so ``-e dev-best.ckpt`` (evaluate, resume) is refused.
  Allowing that one class keeps every other pickle refused.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchaudio_standin  # noqa: E402


def main(argv: list[str]) -> None:
    torchaudio_standin.install()
    torch.serialization.add_safe_globals([argparse.Namespace])
    import s3prl

    script = os.path.join(os.path.dirname(s3prl.__file__), "run_downstream.py")
    sys.argv = [script, *argv]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
