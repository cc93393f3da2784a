from .mae_ast import MAE_AST, MAE_AST_Config  # noqa: F401
