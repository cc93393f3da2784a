from .mae_ast_pretraining import MAE_AST_Pretraining_Config, MAE_AST_Pretraining_Task  # noqa: F401
from .mae_ast_classification import MAE_AST_Classification_Config, MAE_AST_Classification_Task  # noqa: F401
