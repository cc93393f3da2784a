from .mae_ast import MAE_AST, MAE_AST_Config  # noqa: F401
from .mae_ast_classifier import MAE_AST_Classifier, MAE_AST_Classifier_Config  # noqa: F401
