"""Dataset layouts as users download them, turned into data folders (``{split}.tsv``,
``{split}.lbl``, ``label_descriptors.csv``): ``LAYOUTS[name](PrepareOptions(...))`` gives the
``DataDir`` s, ``write_data_dir`` writes each. ``mae-ast-prepare`` is the command line."""

from .audioset import prepare_audioset
from .common import AUDIOSET_SPLITS, DataDir, LayoutError, Lengths, PrepareOptions, write_data_dir  # noqa: F401
from .esc50 import prepare_esc50
from .labelled import prepare_csv, prepare_folders
from .speechcommands import prepare_speechcommands

LAYOUTS = {"esc50": prepare_esc50, "speechcommands": prepare_speechcommands, "audioset": prepare_audioset,
           "folders": prepare_folders, "csv": prepare_csv}
