from .mae_ast import MAE_AST, MAE_AST_Config  # noqa: F401
from .classifier_config import MAE_AST_Classifier_Config  # noqa: F401
from .mae_ast_classifier import MAE_AST_Classifier  # noqa: F401
