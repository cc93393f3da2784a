"""Writing benchmark results: one JSON per script and device under bench/results/.

Every JSON's ``env`` holds ``cpu``: the processor's model and flags. Paired ratios of
CPU work move between processors (the data pipeline's per-core ratios differ by up to
0.2x between an AMD EPYC and the machine BENCHMARKS.md's first tables came from), so a
number is only comparable with one from the same model."""

import json
import os
import platform


def cpu_info(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The CPU's model name, flags (x86 ``flags``, Arm ``Features``) and core counts."""
    fields = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block describes them all
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux: what platform knows
        pass
    flags = fields.get("flags") or fields.get("Features") or ""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": fields.get("model name") or platform.processor() or platform.machine(),
            "arch": platform.machine(), "logical_cores": os.cpu_count(), "usable_cores": usable,
            "flags": sorted(flags.split())}


def save_results(out_dir: str, name: str, env: dict, rows: list[dict]) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"env": {**env, "cpu": cpu_info()}, "rows": rows}, f, indent=1)
    return path
