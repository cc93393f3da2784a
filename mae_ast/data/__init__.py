from .audio_io import AudioError  # noqa: F401
from .features import read_audio  # noqa: F401
from .fbank import fbank  # noqa: F401
from .mae_ast_dataset import MAE_AST_Dataset  # noqa: F401
from .manifest import ManifestError, read_manifest  # noqa: F401
from .resample import resample  # noqa: F401
