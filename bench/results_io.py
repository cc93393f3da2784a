"""Writing benchmark results: one JSON per script and device under bench/results/."""

import json
import os


def save_results(out_dir: str, name: str, env: dict, rows: list[dict]) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"env": env, "rows": rows}, f, indent=1)
    return path
