"""MAE-AST as a fairseq plugin: ``common.user_dir=/path/to/mae_ast`` registers

* pretraining: the task ``mae_ast_pretraining``, the model ``mae_ast`` and the criterion
  ``mae_ast`` (the original's names, configs and checkpoint keys);
* fine-tuning: the task ``mae_ast_classification``, the model ``mae_ast_classifier`` and
  the criterion ``mae_ast_classification``.

Without fairseq installed, ``mae_ast.load`` (features from pretraining or fine-tuned
checkpoints), ``mae_ast.classifier.load_classifier`` and the tools' library parts work.
"""

from ._fairseq import HAVE_FAIRSEQ

if HAVE_FAIRSEQ:
    from . import data, tasks, models, criterions  # noqa: F401  (registration order matters)
from .loading import load  # noqa: E402, F401

__version__ = "0.2.0"
