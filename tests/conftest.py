"""Shared fixtures: tiny configs, the demo data, torchaudio's reference code, and a
checkpoint written by a real fairseq-hydra-train run."""

import contextlib
import importlib.util
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import pytest
import torch

import mae_ast  # noqa: F401  (registers task/model/criterion with fairseq)
from mae_ast.models.builders import task_namespace
from mae_ast.models.mae_ast import MAE_AST, MAE_AST_Config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
REF_DIR = ROOT / ".cache" / "torchaudio_ref"
BIN = Path(sys.executable).parent


def task_cfg(mask_type="random_mask", feature_dim=128, deltas=False, **kw):
    return task_namespace(feature_dim=feature_dim, mask_type=mask_type, deltas=deltas, **kw)


def tiny_model(mask_type="random_mask", kt=16, kc=16, dim=64, layers=2, st=None, sc=None, task=None,
               **overrides) -> MAE_AST:
    cfg = MAE_AST_Config(
        ast_kernel_size_time=kt, ast_kernel_size_chan=kc, ast_kernel_stride_time=st or kt,
        ast_kernel_stride_chan=sc or kc, encoder_layers=layers, decoder_layers=1, encoder_embed_dim=dim,
        decoder_embed_dim=dim, encoder_ffn_embed_dim=2 * dim, encoder_attention_heads=4,
        enc_sine_pos=True, dec_sine_pos=True, max_token_length=2000, **overrides,
    )
    return MAE_AST(cfg, task or task_cfg(mask_type))


def _load_module(name: str, path: Path, stub_torchaudio: bool):
    stubbed = stub_torchaudio and "torchaudio" not in sys.modules
    if stubbed:  # kaldi.py only imports it; the module keeps its reference to the stub
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if stubbed:  # a spec-less stub left behind breaks later find_spec("torchaudio") (transformers)
            del sys.modules["torchaudio"]
    return module


@pytest.fixture(scope="session")
def kaldi_ref():
    """torchaudio.compliance.kaldi: the installed one, else the module unpacked from
    torchaudio's wheel by scripts/fetch_torchaudio_reference.sh."""
    try:
        import torchaudio.compliance.kaldi as kaldi

        return kaldi
    except Exception:
        pass
    path = REF_DIR / "kaldi.py"
    if not path.exists():
        pytest.skip("no torchaudio and no .cache/torchaudio_ref (run scripts/fetch_torchaudio_reference.sh)")
    return _load_module("kaldi_ref", path, stub_torchaudio=True)


# Fixtures that run fairseq-hydra-train: a test reaching one (directly or through another
# fixture) is slow, so `-m "not slow"` starts no training run.
TRAINING_FIXTURES = {"frame_checkpoint", "patch_checkpoint", "finetuned_checkpoint"}
_RUNNING = {"slow": True}


def pytest_sessionstart(session):
    """Free what earlier runs left under pytest's temporary root before this run writes:
    pytest deletes old numbered folders only at its exit, and before
    ``tmp_path_retention_count = 1`` it kept three runs' folders of checkpoints (GBs), so a
    machine that ran the suite before may have too little disk left. Only folders of
    finished runs go (pytest's own rule: no lock, or a lock older than its timeout), so a
    run going on beside this one keeps its folder."""
    if session.config.option.basetemp:
        return  # pytest empties a given --basetemp itself
    from _pytest.pathlib import LOCK_TIMEOUT, cleanup_numbered_dir
    from _pytest.tmpdir import get_user

    temproot = Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()).resolve()
    cleanup_numbered_dir(temproot / f"pytest-of-{get_user() or 'unknown'}", "pytest-", keep=0,
                         consider_lock_dead_if_created_before=time.time() - LOCK_TIMEOUT)


def pytest_collection_modifyitems(config, items):
    for item in items:
        named = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)  # request.getfixturevalue(param) of a parametrized test
        named |= {v for v in (callspec.params.values() if callspec else ()) if isinstance(v, str)}
        if TRAINING_FIXTURES & named:
            item.add_marker(pytest.mark.slow)


def pytest_runtest_setup(item):
    _RUNNING["slow"] = item.get_closest_marker("slow") is not None


def cli_env() -> dict[str, str]:
    # One intra-op thread: the models are tiny, and two threads on two cores spin against
    # the pytest process and each other.
    return dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore")


class WarmStart:
    """``tests/cli_server.py``: it forks each ``mae-ast-*`` or ``fairseq-hydra-train`` command from
    a process that has already imported torch and fairseq, which a fresh interpreter spends ~6 s on
    here. One server per command running at once (tests run fine-tunes from threads), each used
    by one caller at a time. ``MAE_AST_TEST_EXEC=1`` starts every command as its own process."""

    SERVER = [sys.executable, str(Path(__file__).with_name("cli_server.py"))]

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[subprocess.Popen] = []
        self.names: set[str] | None = None

    def serves(self, cmd: list[str]) -> bool:
        if os.environ.get("MAE_AST_TEST_EXEC") == "1" or Path(cmd[0]).parent != BIN:
            return False
        with self.lock:
            if self.names is None:
                self.names = set(subprocess.run([*self.SERVER, "--names"], capture_output=True, text=True,
                                                check=True, env=cli_env()).stdout.split())
        return Path(cmd[0]).name in self.names

    def run(self, cmd: list[str], timeout: int, cwd: Path) -> subprocess.CompletedProcess:
        with self.lock:
            server = self.idle.pop() if self.idle else None
        if server is None or server.poll() is not None:
            server = subprocess.Popen(self.SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      bufsize=1, env=cli_env(), cwd=ROOT)
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp, "out"), Path(tmp, "err")
            request = {"argv": cmd, "cwd": str(cwd), "env": cli_env(), "out": str(out), "err": str(err)}
            out.touch()
            err.touch()
            pid = None
            try:
                server.stdin.write(json.dumps(request) + "\n")
                server.stdin.flush()
                pid = self.reply(server, None)["pid"]
                done = self.reply(server, timeout)
                timed_out = done is None
                if timed_out:
                    self.kill(pid)
                    done = self.reply(server, None)
            except BaseException:  # interrupted (Ctrl-C...): end the command, as subprocess.run does
                if pid is not None:
                    self.kill(pid)
                server.kill()
                raise
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        with self.lock:
            self.idle.append(server)
        if timed_out:
            raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr)
        return subprocess.CompletedProcess(cmd, done["rc"], stdout, stderr)

    @staticmethod
    def kill(pid: int) -> None:
        """The command and whatever it started (its own session: ``cli_server.run_child``)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    @staticmethod
    def reply(server: subprocess.Popen, timeout: float | None) -> dict | None:
        """The server's next line (read unbuffered, so no line waits in a buffer select cannot
        see); None if ``timeout`` passes first."""
        fd, line, end = server.stdout.fileno(), b"", None if timeout is None else time.monotonic() + timeout
        while not line.endswith(b"\n"):
            if end is not None and not select.select([fd], [], [], max(0.0, end - time.monotonic()))[0]:
                return None
            byte = os.read(fd, 1)
            if not byte:
                raise RuntimeError("tests/cli_server.py ended; its stderr is in the test output")
            line += byte
        return json.loads(line)

    def close(self) -> None:
        with self.lock:
            servers, self.idle = self.idle, []
        for server in servers:
            server.stdin.close()
            server.wait(timeout=60)


WARM = WarmStart()


def pytest_sessionfinish(session):
    WARM.close()


def run_cli(*cmd: object, timeout: int = 600, cwd: Path = ROOT, check: bool = False,
            fresh: bool = False) -> subprocess.CompletedProcess:
    """The one way tests run a command line tool; ``check`` asserts exit 0 with its output.
    ``fresh``: a process of its own, not a fork of the warm start (``WarmStart``)."""
    cmd = [str(c) for c in cmd]
    if Path(cmd[0]).name == "fairseq-hydra-train" and not _RUNNING["slow"]:
        pytest.fail("this test starts fairseq-hydra-train: mark it @pytest.mark.slow")
    if not fresh and WARM.serves(cmd):
        proc = WARM.run(cmd, timeout, cwd)
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=cli_env(), cwd=cwd)
    if check:
        assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def fairseq_train(config: str, run_dir: Path, *overrides: object, save_dir: Path | None = None,
                  timeout: int = 600, check: bool = False, fresh: bool = False) -> subprocess.CompletedProcess:
    """fairseq-hydra-train with one of the repo's configs (``pretrain/mae_ast``, ``finetune/base``...)."""
    config_dir, name = config.rsplit("/", 1)
    return run_cli(BIN / "fairseq-hydra-train", "--config-dir", ROOT / "config" / config_dir, "--config-name", name,
                   f"common.user_dir={ROOT / 'mae_ast'}", f"hydra.run.dir={run_dir}",
                   f"checkpoint.save_dir={save_dir or run_dir / 'checkpoints'}", *overrides,
                   timeout=timeout, check=check, fresh=fresh)


def hydra_train(run_dir: Path, *overrides: str, data: Path = DEMO, timeout: int = 600, fresh: bool = False):
    """Pretraining with the repo's config on ``data``; returns the CompletedProcess."""
    return fairseq_train("pretrain/mae_ast", run_dir, f"task.data={data}", *overrides, timeout=timeout, fresh=fresh)


# 64-d fixtures: every default-width (768) run is a test's own (the seed commands);
# at 768 a fixture checkpoint is ~560 MB, most of it sine tables and Adam.
SMALL_WIDTH = ("model.encoder_embed_dim=64", "model.decoder_embed_dim=64", "model.encoder_ffn_embed_dim=128",
               "model.encoder_attention_heads=4")


def _small_run(run: Path, kt: int, kc: int, mask_type: str) -> Path:
    proc = hydra_train(
        run, "model.encoder_layers=2", "model.decoder_layers=1", *SMALL_WIDTH, f"task.mask_type={mask_type}",
        f"model.ast_kernel_size_chan={kc}", f"model.ast_kernel_size_time={kt}",
        f"model.ast_kernel_stride_chan={kc}", f"model.ast_kernel_stride_time={kt}",
        "distributed_training.distributed_world_size=1", "distributed_training.nprocs_per_node=1",
        "common.cpu=true", "dataset.num_workers=0", "optimization.max_update=3", "dataset.max_tokens=1000000",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run / "checkpoints" / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def frame_checkpoint(tmp_path_factory) -> Path:
    """A small frame model (2x128, random_mask, 2 x 64-d layers) trained for 3 updates by the real CLI."""
    return _small_run(tmp_path_factory.mktemp("frame_run"), 2, 128, "random_mask")


@pytest.fixture(scope="session")
def patch_checkpoint(tmp_path_factory) -> Path:
    """A small patch model (16x16, chunk_mask, 2 x 64-d layers) trained for 3 updates by the real CLI."""
    return _small_run(tmp_path_factory.mktemp("patch_run"), 16, 16, "chunk_mask")


def logged(run_dir: Path, tag: str) -> list[dict]:
    """The JSON records fairseq logged under ``tag`` (train_inner, train, valid)."""
    rows = []
    for line in (run_dir / "hydra_train.log").read_text().splitlines():
        m = re.search(rf"\]\[{tag}\]\[INFO\] - (\{{.*\}})$", line)
        if m:
            rows.append(json.loads(m.group(1)))
    return rows


def make_batch(B=2, frames=200, bins=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, frames, bins, generator=g) * 3 - 6


# Fine-tuning on the demo clips: speech_* clips are class 0, env_* class 1 (a multi-label
# variant adds class 2 to every third clip).
CLASS_NAMES = ["speech", "environment", "third"]
FINETUNE_CPU = ["common.cpu=true", "dataset.num_workers=0", "common.log_interval=1", "dataset.batch_size=8",
                "task.target_length=272", "distributed_training.distributed_world_size=1"]


def write_data(folder: Path, multi_label: bool = False) -> Path:
    """A classification data folder over the demo manifests (absolute root, named label lines)."""
    folder.mkdir(parents=True)
    with open(folder / "label_descriptors.csv", "w") as f:
        f.write("index,mid,display_name\n" + "".join(f"{i},/m/{n},{n}\n" for i, n in enumerate(CLASS_NAMES)))
    for split in ("train", "valid", "test"):
        lines = (DEMO / f"{split}.tsv").read_text().splitlines()
        (folder / f"{split}.tsv").write_text("\n".join([str(DEMO / "audio")] + lines[1:]) + "\n")
        rows = []
        for n, line in enumerate(lines[1:]):
            labels = ["speech" if line.startswith("speech") else "environment"]
            if multi_label and n % 3 == 0:
                labels.append("third")
            rows.append(f"{line.split()[0]}\t{','.join(labels)}")
        (folder / f"{split}.lbl").write_text("\n".join(rows) + "\n")
    return folder


def finetune(run_dir: Path, data: Path, ckpt: Path | str, *overrides: str, config: str = "base",
             check: bool = True):
    """Fine-tune with ``config/finetune/{config}.yaml`` on CPU; checkpoints in ``run_dir/ck``.
    Returns that folder (``check``: exit 0 asserted) or the CompletedProcess."""
    proc = fairseq_train(f"finetune/{config}", run_dir, f"task.data={data}", f"model.pretrained_checkpoint={ckpt}",
                         *FINETUNE_CPU, *overrides, save_dir=run_dir / "ck", check=check)
    return run_dir / "ck" if check else proc


@pytest.fixture(scope="session")
def finetuned_checkpoint(tmp_path_factory, patch_checkpoint) -> Path:
    """A classifier fine-tuned 2 updates from ``patch_checkpoint`` on the demo clips
    (speech / environment / third, single-label) by the real CLI: real, not accurate."""
    run = tmp_path_factory.mktemp("finetuned")
    return finetune(run, write_data(run / "data"), patch_checkpoint, "optimization.max_update=2") / "checkpoint_last.pt"
