"""torch.hub-style entries for s3prl: ``-u mae_ast -k /path/to/checkpoint.pt``."""

import os

from .expert import UpstreamExpert as _UpstreamExpert


def mae_ast(ckpt: str, *args, **kwargs) -> _UpstreamExpert:
    """A MAE-AST checkpoint (ours or a released one) from a local path."""
    if not os.path.isfile(ckpt):
        raise FileNotFoundError(f"MAE-AST checkpoint not found: {ckpt}")
    return _UpstreamExpert(ckpt, *args, **kwargs)


# s3prl already has an upstream folder named mae_ast (the original's vendored copy);
# installed beside it as upstream/mae_ast_plus, this name avoids the clash.
mae_ast_plus = mae_ast
