from .mae_ast_criterion import MAE_AST_Criterion, MAE_AST_Criterion_Config  # noqa: F401
