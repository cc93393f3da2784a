from .mae_ast_criterion import MAE_AST_Criterion, MAE_AST_Criterion_Config  # noqa: F401
from .classification_criterion import Classification_Criterion, Classification_Criterion_Config  # noqa: F401
