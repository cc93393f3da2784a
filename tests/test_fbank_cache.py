"""The precomputed-fbank cache: same features as decoding, same skips, refuses stale
caches, and feeds a real fairseq-hydra-train run."""

import shutil

import numpy as np
import pytest
import torch

from conftest import BIN, DEMO, hydra_train, logged, run_cli
from mae_ast.data import MAE_AST_Dataset
from mae_ast.data.audio_io import AudioError
from mae_ast.data.fbank_cache import CacheError, write_cache
from mae_ast.data.features import FeatureSpec


def test_cached_features_equal_decoded_ones(tmp_path):
    ds = MAE_AST_Dataset(str(DEMO / "train.tsv"), min_keep_sample_size=32000)
    meta = write_cache(ds, "train", str(tmp_path), workers=2)
    assert meta["clips"] == 24 and not meta["skipped"]
    cached = MAE_AST_Dataset(str(DEMO / "train.tsv"), min_keep_sample_size=32000)
    cached.use_cache(str(tmp_path), "train")
    for i in range(len(ds)):
        assert torch.equal(cached.get_features(i), ds.get_features(i))


def test_float16_cache_is_close(tmp_path):
    ds = MAE_AST_Dataset(str(DEMO / "valid.tsv"))
    write_cache(ds, "valid", str(tmp_path), dtype="float16")
    cached = MAE_AST_Dataset(str(DEMO / "valid.tsv"))
    cached.use_cache(str(tmp_path), "valid")
    a, b = cached.get_features(0), ds.get_features(0)
    assert a.dtype == torch.float32 and (a - b).abs().max() < 1e-2


def _data_with_a_broken_file(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEMO, data)
    (data / "audio" / "broken.flac").write_bytes(b"no audio here" * 50)
    with open(data / "train.tsv", "a") as f:
        f.write("broken.flac\t170000\n")
    return data


def test_unusable_clips_stay_skipped_with_their_reason(tmp_path):
    data = _data_with_a_broken_file(tmp_path)
    proc = run_cli(BIN / "mae-ast-cache", data, "--out", tmp_path / "cache", "--splits", "train", "--workers", "1")
    assert proc.returncode == 1 and "broken.flac" in proc.stderr
    assert "train: 24 of 25 clips cached" in proc.stdout
    ds = MAE_AST_Dataset(str(data / "train.tsv"), min_keep_sample_size=32000)
    ds.use_cache(str(tmp_path / "cache"), "train")
    broken = next(i for i, p in enumerate(ds.paths) if p.endswith("broken.flac"))
    with pytest.raises(AudioError, match="could not decode"):
        ds.get_features(broken)
    assert ds[broken]["source"] is None


def test_stale_or_mismatched_cache_is_refused(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEMO, data)
    write_cache(MAE_AST_Dataset(str(data / "valid.tsv")), "valid", str(tmp_path / "cache"))
    narrow = MAE_AST_Dataset(str(data / "valid.tsv"), feature_spec=FeatureSpec(num_mel_bins=80))
    with pytest.raises(CacheError, match=r"written with 128 columns \(128 mel bins\) at 16000 Hz, the task asks 80"):
        narrow.use_cache(str(tmp_path / "cache"), "valid")
    # Entries are found by manifest line: a filtered reader uses an unfiltered cache...
    MAE_AST_Dataset(str(data / "valid.tsv"), min_keep_sample_size=32000).use_cache(str(tmp_path / "cache"), "valid")
    # ...but a reader that keeps entries a filtered cache left out is refused, saying how to fix it.
    write_cache(MAE_AST_Dataset(str(data / "valid.tsv"), min_keep_sample_size=60000), "valid", str(tmp_path / "small"))
    with pytest.raises(CacheError, match=r"entries .*valid\.tsv keeps are not in the cache .*min-sample-size 60000"):
        MAE_AST_Dataset(str(data / "valid.tsv")).use_cache(str(tmp_path / "small"), "valid")
    lines = (data / "valid.tsv").read_text().splitlines()
    (data / "valid.tsv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(CacheError, match="another version"):
        MAE_AST_Dataset(str(data / "valid.tsv")).use_cache(str(tmp_path / "cache"), "valid")
    with pytest.raises(CacheError, match="missing"):
        MAE_AST_Dataset(str(data / "valid.tsv")).use_cache(str(tmp_path / "nowhere"), "valid")


def test_cache_of_an_older_mae_ast_cache_is_refused(tmp_path):
    """Caches fingerprinted their manifest by SHA-1 before ``identity.Stamp``: refused, saying so."""
    import json

    write_cache(MAE_AST_Dataset(str(DEMO / "valid.tsv")), "valid", str(tmp_path))
    meta = json.loads((tmp_path / "valid.fbank.json").read_text())
    meta["manifest_sha1"] = str(meta.pop("manifest_key"))
    (tmp_path / "valid.fbank.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError, match="older mae-ast-cache"):
        MAE_AST_Dataset(str(DEMO / "valid.tsv")).use_cache(str(tmp_path), "valid")


@pytest.mark.slow
def test_training_reads_the_cache(tmp_path):
    cache = tmp_path / "cache"
    proc = run_cli(BIN / "mae-ast-cache", DEMO, "--out", cache, "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "run"
    proc = hydra_train(run, "model.encoder_layers=1", "model.decoder_layers=1", "common.cpu=true",
                       "distributed_training.distributed_world_size=1", "dataset.num_workers=2",
                       "optimization.max_update=2", "dataset.max_tokens=8388608", f"task.fbank_cache={cache}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reading features from the cache" in (run / "hydra_train.log").read_text()
    assert int(logged(run, "train")[-1]["train_num_updates"]) == 2
    assert np.isfinite(float(logged(run, "train")[-1]["train_loss"]))
