"""MAE-AST as a fairseq plugin: ``common.user_dir=/path/to/mae_ast`` registers the task
``mae_ast_pretraining``, the model ``mae_ast`` and the criterion ``mae_ast``."""

from . import fairseq_compat  # noqa: F401
from . import data, tasks, models, criterions  # noqa: F401  (registration order matters)

__version__ = "0.2.0"
