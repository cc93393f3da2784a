"""Check a folder of wheels meant for the lent GPU machine, and size what travels there.

    python bench/wheel_check.py [.whl] [--held bench/device_packages.txt] [--limit-mib 64]

A machine there installs the wheels with ``pip install --no-index --no-deps``, so nothing
is resolved: every requirement of every wheel (``Requires-Dist`` without an ``extra``,
its marker evaluated for CPython 3.12 on Linux x86-64) must be a wheel in the folder or
a package the machine already holds (``device_packages.txt``). Two versions of one
package stop the whole install, so duplicates are refused too. Then the size of what
travels (the files git does not ignore, plus the wheels) is printed against the limit.
Exit code 1 names each missing requirement and the wheel that needs it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
# The device's interpreter: markers are evaluated for it, not for the one running this.
DEVICE_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
              "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
              "platform_machine": "x86_64", "os_name": "posix", "extra": ""}


def held_packages(path: Path) -> set[str]:
    lines = (ln.split("#")[0].strip() for ln in path.read_text().splitlines())
    return {canonicalize_name(ln) for ln in lines if ln}


def requirements(wheel: Path) -> list[Requirement]:
    """What the wheel's metadata asks for on the device (extras left out)."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(z.read(meta).decode())
    reqs = [Requirement(r) for r in headers.get_all("Requires-Dist") or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(DEVICE_ENV)]


def check(wheels: list[Path], held: set[str]) -> list[str]:
    """Problems with installing ``wheels`` by themselves beside ``held``: one line each."""
    problems, carried = [], {}
    for w in wheels:
        name = canonicalize_name(parse_wheel_filename(w.name)[0])
        if name in carried:
            problems.append(f"two wheels of {name}: {carried[name].name} and {w.name} (keep one)")
        carried[name] = w
    for w in wheels:
        for req in requirements(w):
            name = canonicalize_name(req.name)
            if name not in carried and name not in held:
                problems.append(f"missing {req} (needed by {w.name}): neither carried nor on the device")
    return problems


def travelling_bytes() -> int:
    """Bytes of the working tree that travels: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    paths = (ROOT / p for p in out.decode().split("\0") if p)
    return sum(p.lstat().st_size for p in paths if p.is_symlink() or p.is_file())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", nargs="?", default=str(ROOT / ".whl"))
    p.add_argument("--held", default=str(ROOT / "bench" / "device_packages.txt"))
    p.add_argument("--limit-mib", type=float, default=64.0)
    args = p.parse_args()
    wheels = sorted(Path(args.folder).glob("*.whl"))
    if not wheels:
        print(f"{args.folder}: no wheels (run bench/device_wheels.sh)")
        return 1
    mib = 2**20
    for w in wheels:
        print(f"{w.stat().st_size / mib:8.2f} MiB  {w.name}")
    wheel_bytes = sum(w.stat().st_size for w in wheels)
    tree = travelling_bytes()
    total = (tree + wheel_bytes) / mib
    print(f"{wheel_bytes / mib:8.2f} MiB  {len(wheels)} wheels")
    print(f"{tree / mib:8.2f} MiB  working tree (tracked + untracked, not ignored)")
    carried = os.path.relpath(args.folder, ROOT)
    print(f"{total:8.2f} MiB  travels with carry=['{carried}'], limit {args.limit_mib:g} MiB: "
          f"{'fits' if total <= args.limit_mib else 'DOES NOT FIT'} ({args.limit_mib - total:+.2f} MiB)")
    problems = check(wheels, held_packages(Path(args.held)))
    for line in problems:
        print(line)
    print("requirements: every one carried or on the device" if not problems else
          f"requirements: {len(problems)} problem(s)")
    return 1 if problems or total > args.limit_mib else 0


if __name__ == "__main__":
    sys.exit(main())
