"""The benchmark scripts run end to end on a CPU at toy sizes and write the JSON their
tables come from. `bench/gpu_run.sh` calls them on a lent GPU with no second try, so a
script broken by a library change must fail here, not there. Nothing here is timed."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REF_DIR, ROOT

pytestmark = pytest.mark.slow


def _run(script: str, *args: str, out) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(out.glob("*.json"))
    assert len(written) == 1, written
    return json.loads(written[0].read_text())


def test_pretrain_step_bench_pairs_ours_with_the_original(tmp_path):
    result = _run("pretrain_step.py", "--device", "cpu", "--tiny", "--clips", "1", "--steps", "2", "--warmup", "0",
                  "--dtypes", "fp32", "--models", "frame", "--variants", "original,mae-ast", "--interleave",
                  out=tmp_path)
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"original", "mae-ast"} and result["env"]["encoder_layerdrop"] == 0.0
    assert all(r["clips_per_s"] > 0 for r in rows.values())


def test_finetune_step_bench_runs_each_recipe(tmp_path):
    result = _run("finetune_step.py", "--device", "cpu", "--tiny", "--clips", "1", "--pretrain-clips", "1",
                  "--steps", "1", "--warmup", "0", "--dtypes", "fp32", "--models", "patch", out=tmp_path)
    steps = [r["step"] for r in result["rows"]]
    assert any(s.startswith("pretrain") for s in steps) and len(steps) >= 2


@pytest.mark.skipif(not (REF_DIR / "kaldi.py").exists(),
                    reason="no .cache/torchaudio_ref (scripts/setup.sh fetches it)")
def test_data_pipeline_bench_compares_features_with_the_original(tmp_path):
    result = _run("data_pipeline.py", "--compare-clips", "1", "--rounds", "2", "--clips", "4", "--workers", "1",
                  "--formats", "flac16,mkv", out=tmp_path)
    per_core = {r["format"]: r for r in result["env"]["per_core"]}
    assert set(per_core) == {"flac16", "mkv"}
    assert per_core["flac16"]["max_abs_feature_diff"] < 1e-5  # same features as the original's code
    assert per_core["mkv"]["max_abs_feature_diff"] < 5e-3  # resampler differences in low-energy bins
