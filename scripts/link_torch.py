"""Share this interpreter's torch with another venv by hard links (no second ~1 GB copy).

    python scripts/link_torch.py VENV

Links every file pip recorded for torch and for what torch requires (sympy, networkx, ...)
into VENV's site-packages, dist-info included, so pip in VENV sees them installed and
installs nothing for a ``torch==<this version>`` requirement. The files are the same
inodes: pip never writes into an installed file (an upgrade or uninstall removes the
link, not the bytes it shares). A distribution VENV already has (its own pip and
setuptools) is left to it. Nothing is done, with a line on stderr saying why, when
VENV runs another Python version, lies on another file system, or already has torch;
pip then installs torch as usual. The test suite's helper venvs (Hugging Face, HEAR,
SUPERB) use it through ``TORCH_FROM``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def requirement_names(dist: metadata.Distribution) -> list[str]:
    """Names of ``dist``'s unconditional requirements (markers that hold here included)."""
    from packaging.requirements import Requirement

    names = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(name: str) -> list[metadata.Distribution]:
    """``name``'s distribution and every one it requires, installed here."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = canonical(todo.pop())
        if key in seen:
            continue
        try:
            dist = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            continue  # an optional extra's package that is not installed here
        seen[key] = dist
        todo.extend(requirement_names(dist))
    return list(seen.values())


def target_site(venv: Path) -> Path:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import sys, sysconfig; print(sys.version_info[:2] == tuple(map(int, sys.argv[1:])));"
                          "print(sysconfig.get_paths()['purelib'])", *map(str, sys.version_info[:2])],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    if out[0] != "True":
        raise RuntimeError(f"{venv} runs another Python version than {sys.executable}")
    return Path(out[1])


def main() -> int:
    venv = Path(sys.argv[1])
    try:
        site = target_site(venv)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as err:
        print(f"link_torch: not linking ({err}); pip installs torch", file=sys.stderr)
        return 0
    dists = closure("torch")
    here = Path(dists[0].locate_file(""))
    if any(site.glob("torch-*.dist-info")) or os.stat(site).st_dev != os.stat(here).st_dev:
        return 0  # already there, or hard links cannot reach it: pip decides
    # What the venv already has (pip, setuptools) stays its own: two versions' files in one
    # folder would leave neither whole.
    present = {canonical(p.name.split("-")[0]) for p in site.glob("*.dist-info")}
    dists = [d for d in dists if canonical(d.metadata["Name"]) not in present]
    for dist in dists:
        for rel in dist.files or []:
            source = Path(dist.locate_file(rel))
            if ".." in rel.parts or not source.is_file():
                continue  # console scripts in bin/, caches pip listed but never wrote
            dest = site / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                os.link(source, dest)
    print(f"link_torch: {', '.join(d.metadata['Name'] for d in dists)} linked into {site}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
