"""A warm start for console scripts in tests: one process imports torch, fairseq and mae_ast
once (~6 s on the 2-core CI machine), then forks a child per command that runs the script's
entry point as its ``.venv/bin`` script does (``sys.exit(main())``), with the command's argv,
working directory, environment and stdout/stderr files. Only the interpreter's start and those
imports are shared; everything the command does runs in the child. Served: ``mae-ast-*`` and
``fairseq-hydra-train`` (``fairseq_cli`` is imported by the child, as a fresh process would).

What differs from separate processes, none of which the served commands depend on: children of
one server share its ``str`` hash seed and numpy's global RNG state as left by the imports;
fairseq's ``import_user_module`` finds ``mae_ast`` already imported (its ``__init__`` registers
every task, model and criterion, so nothing is missed); non-daemon threads are not joined at exit;
stdin is /dev/null. ``conftest.run_cli(fresh=True)`` starts a real process where that matters
(the seed commands, a determinism check); kills and distributed runs start their own processes.

Protocol (one JSON object per line): request ``{"argv", "cwd", "env", "out", "err"}`` on stdin;
replies ``{"pid": N}`` when the child starts and ``{"rc": N}`` when it ends.
"""

import atexit
import contextlib
import importlib.metadata
import json
import os
import signal
import sys
import traceback


def entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")
            if ep.value.startswith("mae_ast.") or ep.name == "fairseq-hydra-train"}


def run_child(req: dict, target: str) -> int:
    """In the forked child: become the command, run it, return its exit status."""
    os.setsid()  # its own process group, so a timeout kills whatever it started too
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, req["out"]), (2, req["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.argv = list(req["argv"])
    module, func = target.split(":")
    try:
        code = getattr(importlib.import_module(module), func)()
        code = 0 if code is None else code
    except SystemExit as exit_:
        code = 0 if exit_.code is None else exit_.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if not isinstance(code, int):  # sys.exit("message"): printed, status 1, as the interpreter does
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def serve() -> None:
    sys.path[0] = os.path.dirname(sys.executable)  # a console script's own sys.path[0]
    import torch  # noqa: F401  (the imports every tool pays for; no thread is started by them)
    import mae_ast  # noqa: F401
    import mae_ast.tools  # noqa: F401

    targets = entry_points()
    reply = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run_child(req, targets[os.path.basename(req["argv"][0])])
            except BaseException:  # before its output was redirected (cwd gone...): the server's stderr
                traceback.print_exc()
            finally:
                os._exit(code)
        reply.write(json.dumps({"pid": pid}) + "\n")
        reply.flush()
        try:
            _, status = os.waitpid(pid, 0)
        except BaseException:  # the server stopped (Ctrl-C): the command it ran does not outlive it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            raise
        rc = os.waitstatus_to_exitcode(status)
        reply.write(json.dumps({"rc": rc}) + "\n")
        reply.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--names"]:
        print("\n".join(entry_points()))
    else:
        serve()
