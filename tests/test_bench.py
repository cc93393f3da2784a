"""The benchmark scripts run end to end on a CPU at toy sizes and write the JSON their
tables come from. `bench/gpu_run.sh` calls them on a lent GPU with no second try, so a
script broken by a library change must fail here, not there. Nothing here is timed.
(The whole GPU run in the device's environment is `bench/rehearse_device.sh`: minutes,
not a test.) Also: the carried-wheel check, the JSON's CPU record, the step order."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REF_DIR, ROOT

sys.path.insert(0, str(ROOT / "bench"))
from results_io import save_results  # noqa: E402
from wheel_check import check, held_packages  # noqa: E402


def _run(script: str, *args: str, out) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(out.glob("*.json"))
    assert len(written) == 1, written
    return json.loads(written[0].read_text())


@pytest.mark.slow
def test_pretrain_step_bench_pairs_ours_with_the_original(tmp_path):
    result = _run("pretrain_step.py", "--device", "cpu", "--tiny", "--clips", "1", "--steps", "2", "--warmup", "0",
                  "--dtypes", "fp32", "--models", "frame", "--variants", "original,mae-ast", "--interleave",
                  out=tmp_path)
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"original", "mae-ast"} and result["env"]["encoder_layerdrop"] == 0.0
    assert all(r["clips_per_s"] > 0 for r in rows.values())


@pytest.mark.slow
def test_finetune_step_bench_runs_each_recipe(tmp_path):
    result = _run("finetune_step.py", "--device", "cpu", "--tiny", "--clips", "1", "--pretrain-clips", "1",
                  "--steps", "1", "--warmup", "0", "--dtypes", "fp32", "--models", "patch", out=tmp_path)
    steps = [r["step"] for r in result["rows"]]
    assert any(s.startswith("pretrain") for s in steps) and len(steps) >= 2


@pytest.mark.slow
def test_probe_time_bench_runs_the_probes_own_extraction_and_fit(tmp_path):
    # It builds mae_ast.probe's own Split, so a change to that signature must fail here.
    result = _run("probe_time.py", "--clips", "2", "--seconds", "2", "--fit-clips", "200", "--dim", "32",
                  "--classes", "5", out=tmp_path)
    row = result["rows"][0]
    assert row["s_per_clip"] > 0 and row["fit_s"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not (REF_DIR / "kaldi.py").exists(),
                    reason="no .cache/torchaudio_ref (scripts/setup.sh fetches it)")
def test_data_pipeline_bench_compares_features_with_the_original(tmp_path):
    result = _run("data_pipeline.py", "--compare-clips", "1", "--rounds", "2", "--clips", "4", "--workers", "1",
                  "--formats", "flac16,mkv", out=tmp_path)
    per_core = {r["format"]: r for r in result["env"]["per_core"]}
    assert set(per_core) == {"flac16", "mkv"}
    assert per_core["flac16"]["max_abs_feature_diff"] < 1e-5  # same features as the original's code
    assert per_core["mkv"]["max_abs_feature_diff"] < 5e-3  # resampler differences in low-energy bins


def _wheel(folder, name: str, version: str, *requires: str):
    """A minimal wheel: only the METADATA the device's --no-deps install would ignore."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
        name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", meta)
    return path


def test_wheel_check_names_what_neither_the_wheels_nor_the_device_hold(tmp_path):
    wheels = [
        _wheel(tmp_path, "ve_fairseq", "0.12.3", "hydra-core>=1.3.2", "cffi", "torch>=1.13",
               "black==22.3.0; extra == 'dev'", "pywin32; sys_platform == 'win32'"),
        _wheel(tmp_path, "hydra_core", "1.3.2", "omegaconf<2.4,>=2.2"),
        _wheel(tmp_path, "omegaconf", "2.3.0", "PyYAML>=5.1.0"),
        _wheel(tmp_path, "omegaconf", "2.2.3"),
    ]
    held = held_packages(ROOT / "bench" / "device_packages.txt")
    assert {"torch", "numpy", "pyyaml", "sacrebleu"} <= held and "cffi" not in held
    problems = check(wheels, held)
    # extras and other platforms' markers ask for nothing; torch and PyYAML are there
    assert len(problems) == 2, problems
    assert "two wheels of omegaconf" in problems[0]
    assert problems[1].startswith("missing cffi (needed by ve_fairseq-0.12.3")
    assert check(wheels[:3] + [_wheel(tmp_path, "cffi", "2.1.1")], held) == []


def test_every_benchmark_json_records_the_cpu(tmp_path):
    path = save_results(str(tmp_path), "x", {"device": "cpu"}, [])
    cpu = json.loads(open(path).read())["env"]["cpu"]
    assert cpu["model"] and cpu["arch"] and cpu["logical_cores"] >= 1
    if os.path.exists("/proc/cpuinfo") and cpu["arch"] == "x86_64":
        assert "sse2" in cpu["flags"]


@pytest.mark.slow
def test_gpu_run_puts_the_headline_first(tmp_path):
    """With no time left every step is skipped, in the order it would have run."""
    env = {**os.environ, "GPU_RUN_SECONDS": "0", "OUT": str(tmp_path), "PYTHON": sys.executable,
           "GPU_RUN_WHEELS": str(tmp_path / "none")}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_run.sh"), "--device", "cpu"], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)
    skipped = [ln.split()[2] for ln in proc.stdout.splitlines() if ln.startswith("SKIPPED step")]
    assert skipped == ["machine", "headline", "pretrain", "halfmodel", "fused", "compile", "precision", "finetune"]
    assert proc.returncode == 1 and "0 OK, 0 FAILED (), 8 SKIPPED" in proc.stdout
    bad = subprocess.run(["bash", str(ROOT / "bench" / "gpu_run.sh"), "nosuchstep"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "unknown step nosuchstep" in bad.stdout
