"""AudioSet: class_labels_indices.csv, the segment CSVs and downloaded clips (multi-label);
CSV rows without a downloaded clip are listed per split."""

from __future__ import annotations

import csv
import io
import os

from ..labels import LabelError, LabelSet, read_label_descriptors, read_text, youtube_ids
from ..datadir import find_audio
from .common import Clip, DataDir, LayoutError, PrepareOptions, require


def prepare_audioset(opts: PrepareOptions) -> list[DataDir]:
    """``csv_dir`` and ``audio_dir`` are folders of SRC (an absolute path is taken as it is)."""
    src = os.path.abspath(opts.src)
    csv_dir, audio = (os.path.join(src, d) if d else src for d in (opts.csv_dir, opts.audio_dir))
    expected = "expected AudioSet's class_labels_indices.csv and segment CSVs (see --csv-dir, --splits)"
    try:
        labels = read_label_descriptors(require(os.path.join(csv_dir, "class_labels_indices.csv"), expected))
    except LabelError as err:
        raise LayoutError(str(err)) from None
    if not os.path.isdir(audio):
        raise LayoutError(f"{audio}: audio folder not found (--audio-dir, taken from SRC {src})")
    found = index_clips(audio)
    splits, missing = {}, {}
    for split, name in opts.splits.items():
        segments = read_segments(require(os.path.join(csv_dir, name), expected), labels)
        splits[split] = [Clip(found[y], ids) for y, ids in segments if y in found]
        missing[split] = [y for y, _ in segments if y not in found]
    return [DataDir(opts.out, audio, labels.names, splits, labels.mids, missing)]


def read_segments(path: str, labels: LabelSet) -> list[tuple[str, list[int]]]:
    """(YTID, class indices) of each row ``YTID, start, end, "mid1,mid2"`` after the # comments."""
    rows = []
    reader = csv.reader(io.StringIO(read_text(path), newline=""), skipinitialspace=True)  # ', ' separators
    for row in reader:
        if not row or row[0].startswith("#"):
            continue
        if len(row) != 4:
            raise LayoutError(f"{path}:{reader.line_num}: expected 'YTID, start, end, \"mids\"', got {row}")
        try:
            rows.append((row[0], [labels.lookup(m.strip()) for m in row[3].split(",")]))
        except LookupError as err:
            raise LayoutError(f"{path}:{reader.line_num}: {err.args[0]}") from None
    return rows


def index_clips(folder: str) -> dict[str, str]:
    """YTID -> file, for ``{YTID}.ext`` and the names ``youtube_ids`` reads (label files' rule); an
    exact stem match wins, else the first file in sorted order."""
    paths = find_audio(folder, absolute=True)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    exact: dict[str, str] = {}
    derived: dict[str, str] = {}
    for path, stem, ytid in zip(paths, stems, youtube_ids(stems)):
        exact.setdefault(stem, path)
        if ytid is not None:
            derived.setdefault(ytid, path)
    return {**derived, **exact}
