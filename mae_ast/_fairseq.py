"""fairseq when it is installed, stand-ins when it is not: only training needs it; loading
and feature extraction (s3prl, pipelines) need only torch.
"""

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

try:
    from fairseq.dataclass import ChoiceEnum, FairseqDataclass
    from fairseq.models import BaseFairseqModel, register_model

    HAVE_FAIRSEQ = True
except ImportError:  # pragma: no cover - exercised by a subprocess test
    HAVE_FAIRSEQ = False

    @dataclass
    class FairseqDataclass:
        _name: Any = None

    def ChoiceEnum(choices: list[str]) -> type:  # noqa: N802 (fairseq's name)
        return str

    def register_model(name: str, dataclass: Any = None):
        return lambda cls: cls

    BaseFairseqModel = nn.Module
