"""What a fine-tuning run's validation numbers are (valid = test; only each clip's first
``task.target_length`` frames scored), said when the run starts and by
``mae-ast-validate --recipe``: statements about the number a user will report, not advice."""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import numpy as np

from ..data.audio_io import SOUNDFILE_EXTENSIONS
from ..data.classification_dataset import label_paths
from ..data.features import FeatureSpec
from ..data.identity import manifest_keys
from ..data.manifest import Manifest, ManifestError, read_manifest
from ..provenance import overlap_counts

logger = logging.getLogger(__name__)
# Headers read to count the clips validation crops: at ~2 ms each on a cold disk, a few
# seconds at most (ESC-50's folds are counted, Speech Commands' 10k valid clips are not).
MAX_COUNTED_CLIPS = 2000


def validation_notes(cfg: Any, data: str, spec: Optional[FeatureSpec] = None) -> list[tuple[bool, str]]:
    """(important, note) for the run ``cfg`` (fairseq's whole config) on the folder ``data``."""
    valid = cfg.dataset.get("valid_subset", "valid").split(",")[0]
    manifest = None if cfg.dataset.get("disable_validation") else read_split(data, valid)
    if manifest is None:
        return []
    selection = selected_on_test(data, manifest, (valid, "test"))
    crop = validation_crop_note(manifest, spec or FeatureSpec(), int(cfg.task.target_length), valid)
    return ([(True, selection)] if selection else []) + [crop]


def log_validation_notes(cfg: Any, data: str, spec: Optional[FeatureSpec] = None) -> None:
    for important, note in validation_notes(cfg, data, spec):
        (logger.warning if important else logger.info)(note)


def read_split(data: str, split: str) -> Optional[Manifest]:
    """A split's manifest, or None when it cannot be read (the dataset's own load says why)."""
    try:
        return read_manifest(label_paths(data, split)[0])
    except ManifestError:
        return None


def selected_on_test(data: str, valid: Manifest, names: tuple[str, str] = ("valid", "test")) -> Optional[str]:
    """The warning when the ``names[0]`` split ``valid`` of ``data`` holds clips of its ``names[1]``
    split, matched as every leak check does (by real path or content: symlinks, copies of the
    list and byte copies under another name count), else None."""
    test = read_split(data, names[1])
    if test is None:
        return None
    (pk, ck), (test_pk, test_ck) = (manifest_keys(label_paths(data, name)[0], m.paths)
                                    for name, m in zip(names, (valid, test)))
    shared = overlap_counts(pk, ck, np.sort(test_pk), np.sort(test_ck))[1]["either"]
    if not shared:
        return None
    return (f"{shared} of the {len(valid.paths)} {names[0]} clips are {names[1]} clips by real path or "
            "content (valid = test in the ESC-50 and AudioSet recipes): checkpoint_best.pt is selected on the "
            "clips it will be scored on, so its test score is the best test score over epochs, an optimistic "
            "number. Report checkpoint_last.pt's test score (the README's fold loop does), and label a "
            "best-epoch one as selected on test")


def longer_clips(paths: list[str], sizes: list[int], spec: FeatureSpec, target_length: int) -> Optional[int]:
    """How many clips give more than ``target_length`` frames (rates from the headers); None
    beyond ``MAX_COUNTED_CLIPS`` clips or for a header soundfile cannot read."""
    import soundfile as sf

    if len(paths) > MAX_COUNTED_CLIPS:
        return None
    count = 0
    for path, size in zip(paths, sizes):
        if os.path.splitext(path)[1].lower() not in SOUNDFILE_EXTENSIONS:
            return None
        try:
            rate = sf.info(path).samplerate
        except Exception:  # unreadable: the dataset names it when it loads; no count here
            return None
        count += spec.frames_at_rate(size, rate) > target_length
    return count


def validation_crop_note(valid: Manifest, spec: FeatureSpec, target_length: int, name: str = "valid"
                         ) -> tuple[bool, str]:
    """(important: some clips are longer or were not counted, note): what validation scores
    of a clip longer than the input."""
    seconds = target_length * spec.frame_shift_ms / 1000.0
    n_long = longer_clips(valid.paths, valid.sizes, spec, target_length)
    how_many = (f"{n_long} of {len(valid.paths)} {name} clips are longer" if n_long is not None else
                f"the {len(valid.paths)} {name} clips were not counted (mae-ast-evaluate CKPT DATA --split "
                f"{name} prints how many are longer, n_cropped)")
    note = (f"validation scores each clip's first task.target_length={target_length} frames ({seconds:g} s), "
            f"as mae-ast-evaluate's default --crop start: {how_many}")
    if n_long == 0:
        return False, note
    return True, note + "; their later frames are not scored (mae-ast-evaluate --crop windows scores every frame)"
