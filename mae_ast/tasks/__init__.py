from .mae_ast_pretraining import MAE_AST_Pretraining_Config, MAE_AST_Pretraining_Task  # noqa: F401
