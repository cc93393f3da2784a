"""MAE-AST as a fairseq plugin: ``common.user_dir=/path/to/mae_ast`` registers the tasks
``mae_ast_pretraining``/``mae_ast_classification``, the models ``mae_ast``/``mae_ast_classifier`` and
the criteria ``mae_ast``/``mae_ast_classification`` (pretraining's: the original's names). Without
fairseq, ``mae_ast.load``, ``mae_ast.classifier`` and the tools' library parts work.
"""

from ._fairseq import HAVE_FAIRSEQ

if HAVE_FAIRSEQ:
    from . import data, tasks, models, criterions  # noqa: F401  (registration order matters)
from .loading import load  # noqa: E402, F401

__version__ = "0.2.0"
