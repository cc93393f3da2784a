"""Share this interpreter's installed packages with another venv by hard links.

    python scripts/link_packages.py VENV [NAME ...]      (default NAME: torch)

Links every file pip recorded for each named distribution and for what it requires
(torch: sympy, networkx, ...) into VENV's site-packages, dist-info included, so pip in
VENV sees them installed and installs nothing for a requirement they satisfy: no second
~1 GB of torch, numpy, scipy... on disk. The files are the same inodes: pip never writes
into an installed file (an upgrade or uninstall removes the link, not the bytes it
shares). A distribution VENV already has (its own pip and setuptools) is left to it.
Nothing is done, with a line on stderr saying why, when VENV runs another Python version
or lies on another file system; pip then installs as usual. The test suite's helper venvs
use it through ``TORCH_FROM`` (HEAR, SUPERB: torch and the numeric stack they share with
the project) and the Hugging Face clean venv (torch only, so it stays clean).
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
        print(f"link_packages: not linking ({err}); pip installs", file=sys.stderr)
        return 0
    names = sys.argv[2:] or ["torch"]
    dists = [d for name in names for d in closure(name)]
    dists = list({canonical(d.metadata["Name"]): d for d in dists}.values())
    if not dists:
        print(f"link_packages: none of {names} is installed here; pip installs", file=sys.stderr)
        return 0
    here = Path(dists[0].locate_file(""))
    if os.stat(site).st_dev != os.stat(here).st_dev:
        print(f"link_packages: {site} is on another file system; pip installs", file=sys.stderr)
        return 0
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
    print(f"link_packages: {', '.join(d.metadata['Name'] for d in dists) or 'nothing'} linked into {site}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
