"""MAE-AST as a fairseq plugin: ``common.user_dir=/path/to/mae_ast`` registers the task
``mae_ast_pretraining``, the model ``mae_ast`` and the criterion ``mae_ast``.

Without fairseq installed, ``mae_ast.load`` and feature extraction still work.
"""

from ._fairseq import HAVE_FAIRSEQ

if HAVE_FAIRSEQ:
    from . import fairseq_compat  # noqa: F401
    from . import data, tasks, models, criterions  # noqa: F401  (registration order matters)
from .inference import load, load_checkpoint  # noqa: E402, F401

__version__ = "0.2.0"
