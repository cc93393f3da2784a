"""The original's manifest format: ``{split}.tsv`` whose first line is a root folder and
each further line ``path<TAB>length_in_samples`` (length in the file's own rate; paths
absolute or relative to the root)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file and line."""


@dataclass
class Manifest:
    root: str
    paths: list[str]  # full paths, root joined
    entries: list[str]  # paths as written, which label files use to name clips
    sizes: list[int]  # length in samples, as written in the manifest
    lines: list[int]  # 1-based manifest line of each entry, for error messages
    n_short: int = 0  # entries left out by min_keep
    n_long: int = 0  # entries left out by max_keep


def read_manifest(
    manifest_path: str, min_keep: int | None = None, max_keep: int | None = None
) -> Manifest:
    """Parse ``manifest_path``; entries shorter than ``min_keep`` or longer than
    ``max_keep`` samples are skipped with counts logged, as the original did. A malformed
    line is an error naming the line: training on a silently shortened list is worse."""
    if not os.path.isfile(manifest_path):
        raise ManifestError(f"{manifest_path}: manifest not found")
    with open(manifest_path, encoding="utf-8-sig") as f:  # -sig: a Windows editor's BOM
        root = f.readline().strip()
        if not root:
            raise ManifestError(f"{manifest_path}:1: first line must be the root folder")
        # A relative root is taken from the manifest's folder (the original used the
        # working directory, which fairseq-hydra-train changes), so manifests can ship.
        root = os.path.join(os.path.dirname(os.path.abspath(manifest_path)), root)
        if not os.path.isdir(root):
            # Every clip would be skipped as missing and fairseq would train on nothing.
            raise ManifestError(f"{manifest_path}:1: root folder {root} does not exist; the first line "
                                "must be the folder the audio paths are relative to")
        paths, entries, sizes, lines = [], [], [], []
        n_short = n_long = 0
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            items = line.rstrip("\n").split("\t")
            if len(items) != 2 or not items[1].strip().isdigit():
                raise ManifestError(
                    f"{manifest_path}:{lineno}: expected 'path<TAB>length_in_samples', "
                    f"got {line.strip()!r}"
                )
            size = int(items[1])
            if min_keep is not None and size < min_keep:
                n_short += 1
            elif max_keep is not None and size > max_keep:
                n_long += 1
            else:
                paths.append(os.path.join(root, items[0]))
                entries.append(items[0])
                sizes.append(size)
                lines.append(lineno)
    logger.info(
        f"{manifest_path}: max_keep={max_keep}, min_keep={min_keep}, loaded {len(paths)}, "
        f"skipped {n_short} short and {n_long} long"
        + (f", longest-loaded={max(sizes)}, shortest-loaded={min(sizes)}" if sizes else "")
    )
    return Manifest(root, paths, entries, sizes, lines, n_short, n_long)
