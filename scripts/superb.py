"""The argument side of ``scripts/superb.sh`` (run inside its venv): the paper's SUPERB
settings as task names, ``--device`` from the machine, and paths made absolute, since
s3prl's runner is run from its package folder (its default configs are relative to it).

    superb.py {ks1,sid,er} [RUN_DOWNSTREAM_ARGS...]   train with s3prl/config/<task>, then
                                                      evaluate the test split with dev-best.ckpt
    superb.py run RUN_DOWNSTREAM_ARGS...              one run_downstream.py call, as given

Arguments given win over the task's (``-c``, ``-s``, ``-n``, ``-p``, ``--device``...), so a
task name is the paper's defaults, not a cage. Results go to ``./result/downstream/<name>``
in the folder it is called from (``-p`` to choose), not into the installed s3prl.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "kits" / "s3prl_run.py"


@dataclass(frozen=True)
class Task:
    downstream: str  # s3prl's downstream folder
    feature: str  # -s: what the paper's run took from the upstream


# The paper's SUPERB settings; their configs are s3prl/config/<downstream>/config.yaml.
TASKS = {
    "ks1": Task("speech_commands", "last_hidden_state"),
    "sid": Task("voxceleb1", "hidden_states"),
    "er": Task("emotion", "last_hidden_state"),
}
# run_downstream.py options that take a path (made absolute before the runner changes folder).
PATH_OPTIONS = {"-k", "--upstream_ckpt", "-c", "--config", "-p", "--expdir", "-e", "--past_exp",
                "-i", "--init_ckpt", "-g", "--upstream_model_config", "--cache_dir"}
ALIASES = {"-n": "--expname", "-p": "--expdir", "-e": "--past_exp", "-m": "--mode", "-c": "--config",
           "-s": "--upstream_feature_selection", "-u": "--upstream", "-d": "--downstream", "-k": "--upstream_ckpt"}


def _value(args: list[str], option: str) -> str | None:
    """The value given for ``option`` (short or long form), or None."""
    names = {option, *(k for k, v in ALIASES.items() if v == option)}
    for i, arg in enumerate(args):
        if arg in names and i + 1 < len(args):
            return args[i + 1]
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _absolute(args: list[str]) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg in PATH_OPTIONS:
            out[i + 1] = os.path.abspath(out[i + 1])
    return out


def _with_defaults(args: list[str], defaults: dict[str, str | None]) -> list[str]:
    """``args`` plus each default option the user did not give (None: a flag)."""
    extra: list[str] = []
    for option, value in defaults.items():
        if _value(args, option) is None and option not in args:
            extra += [option] if value is None else [option, value]
    return [*args, *extra]


def device() -> str:
    """s3prl's runner defaults to cuda; on a machine without one that fails at once."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_downstream(args: list[str]) -> None:
    """One run_downstream.py call through the compatibility layer; exits on failure."""
    args = _with_defaults(args, {"--device": device()})
    mode, name = _value(args, "--mode"), _value(args, "--expname")
    if mode == "train" and name and _value(args, "--expdir") is None and _value(args, "--past_exp") is None:
        args += ["--expdir", str(Path("result", "downstream", name))]
    args = _absolute(args)
    import s3prl

    print("superb: run_downstream.py " + " ".join(args), file=sys.stderr, flush=True)
    code = subprocess.call([sys.executable, str(RUNNER), *args], cwd=os.path.dirname(s3prl.__file__))
    if code:
        sys.exit(code)


def run_task(task: Task, args: list[str]) -> None:
    """Train with the paper's settings, then evaluate the test split with dev-best.ckpt."""
    args = _with_defaults(args, {
        "--mode": "train", "--upstream": "mae_ast_plus", "--downstream": task.downstream,
        "--upstream_feature_selection": task.feature, "-f": None,
        "--config": str(REPO / "s3prl" / "config" / task.downstream / "config.yaml"),
        "--expname": f"mae_ast_{task.downstream}",
    })
    if _value(args, "--upstream_ckpt") is None:
        sys.exit("superb: give the MAE-AST checkpoint with -k /path/to/checkpoint.pt")
    run_downstream(args)
    expdir = _value(args, "--expdir") or str(Path("result", "downstream", _value(args, "--expname")))
    best = Path(expdir, "dev-best.ckpt")
    if not best.is_file():
        sys.exit(f"superb: training wrote no {best} (no dev evaluation ran: raise total_steps past eval_step)")
    run_downstream(["--mode", "evaluate", "--past_exp", str(best), *_device_arg(args)])


def _device_arg(args: list[str]) -> list[str]:
    given = _value(args, "--device")
    return ["--device", given] if given else []


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {*TASKS, "run"}:
        sys.exit(f"usage: scripts/superb.sh {{{','.join(TASKS)},run}} [run_downstream.py args...]")
    if argv[0] == "run":
        run_downstream(argv[1:])
    else:
        run_task(TASKS[argv[0]], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
