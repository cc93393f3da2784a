"""Manifests, audio loading, the dataset's batches, and bad input."""

import logging
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import DEMO
from mae_ast.data import MAE_AST_Dataset, ManifestError, read_audio, read_manifest
from mae_ast.data.audio_io import AudioError
from mae_ast.data.fbank import fbank
from mae_ast.data.resample import resample
from mae_ast.data.datadir import audio_length


def write_manifest(folder, rows, root=None):
    path = os.path.join(folder, "train.tsv")
    with open(path, "w") as f:
        f.write((root or str(folder)) + "\n")
        for row in rows:
            f.write(row + "\n")
    return path


def tone(seconds=2.5, rate=16000, freq=440.0, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wav] * channels, axis=1) if channels > 1 else wav


def test_demo_manifests_resolve_against_their_folder():
    for split, n in (("train", 24), ("valid", 8), ("test", 8)):
        m = read_manifest(str(DEMO / f"{split}.tsv"))
        assert len(m.paths) == n and all(os.path.isfile(p) for p in m.paths)


def test_manifest_lengths_match_the_files():
    m = read_manifest(str(DEMO / "train.tsv"))
    for path, size in zip(m.paths, m.sizes):
        assert audio_length(path) == size


def test_manifest_min_max_keep_skip_with_counts(tmp_path, caplog):
    path = write_manifest(tmp_path, ["a.flac\t100", "b.flac\t40000", "c.flac\t900000"])
    with caplog.at_level(logging.INFO):
        m = read_manifest(path, min_keep=32000, max_keep=500000)
    assert [os.path.basename(p) for p in m.paths] == ["b.flac"]
    assert "skipped 1 short and 1 long" in caplog.text


@pytest.mark.parametrize("bad", ["a.flac", "a.flac\tten", "a.flac\t10\textra"])
def test_malformed_manifest_line_names_file_and_line(tmp_path, bad):
    path = write_manifest(tmp_path, ["ok.flac\t40000", bad])
    with pytest.raises(ManifestError, match=r"train\.tsv:3: expected 'path<TAB>length_in_samples'"):
        read_manifest(path)


def test_stereo_44k_is_averaged_and_resampled(tmp_path):
    stereo = tone(2.0, 44100, channels=2)
    stereo[:, 1] *= 0.5
    sf.write(tmp_path / "s.flac", stereo, 44100)
    wav = read_audio(str(tmp_path / "s.flac"))
    expected = resample(torch.from_numpy(stereo.mean(axis=1)), 44100, 16000)
    assert wav.shape == (32000,)
    assert torch.allclose(wav, expected, atol=1e-5)


def test_mkv_decodes_like_its_source():
    wav = read_audio(str(DEMO / "audio" / "env_14.mkv"))  # AAC in Matroska, 16 kHz
    assert wav.dtype == torch.float32 and wav.dim() == 1
    assert 0.05 < wav.abs().max() <= 1.0 and abs(len(wav) - audio_length(str(DEMO / "audio" / "env_14.mkv"))) < 2048


def _bad_files(tmp_path):
    sf.write(tmp_path / "good.flac", tone(), 16000)
    (tmp_path / "empty.flac").write_bytes(b"")
    (tmp_path / "garbage.flac").write_bytes(os.urandom(4000))
    good = (tmp_path / "good.flac").read_bytes()
    (tmp_path / "truncated.flac").write_bytes(good[:200])
    sf.write(tmp_path / "short.wav", tone(0.12), 16000)  # 10 frames: less than a 16-frame patch
    sf.write(tmp_path / "tiny.wav", tone(0.02), 16000)  # less than one fbank window
    nan = tone()
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(tmp_path / "int16_scale.wav", tone() * 32768, 16000, subtype="FLOAT")
    return {
        "missing.flac": "file not found",
        "empty.flac": "file is empty",
        "garbage.flac": "soundfile could not decode it",
        "truncated.flac": "soundfile could not decode it",
        "short.wav": "shorter than one patch",
        "tiny.wav": "shorter than one 400-sample fbank window",
        "nan.wav": "NaN or inf",
        "int16_scale.wav": "not on the [-1, 1] scale",
    }


def test_bad_files_are_skipped_named_once_and_counted(tmp_path, caplog):
    reasons = _bad_files(tmp_path)
    # Manifest lengths as mae-ast-manifest writes them (the header's), so only the
    # files' own faults are reported, not a length mismatch.
    real = {"short.wav": sf.info(tmp_path / "short.wav").frames, "tiny.wav": sf.info(tmp_path / "tiny.wav").frames}
    rows = ["good.flac\t40000"] + [f"{name}\t{real.get(name, 40000)}" for name in reasons]
    ds = MAE_AST_Dataset(write_manifest(tmp_path, rows))
    ds.min_frames = 16
    with caplog.at_level(logging.WARNING):
        samples = [ds[i] for i in range(len(ds))] + [ds[i] for i in range(len(ds))]
    batch = ds.collater(samples)
    assert batch["n_skipped"] == 2 * len(reasons)
    assert batch["net_input"]["source"].shape == (2, 248, 128)
    for lineno, (name, reason) in enumerate(reasons.items(), start=3):
        lines = [r.message for r in caplog.records if name in r.message]
        assert len(lines) == 1, name  # named once, with its reason and manifest line
        assert reason in lines[0] and f"train.tsv:{lineno}" in lines[0]


@pytest.mark.parametrize("name, samples, detail", [
    ("int16_scale.wav", tone() * 32768, "peak amplitude 9830 "),  # int16 values written as float
    ("whole_numbers.wav", np.round(tone() * 20), "peak amplitude 6 "),  # quiet, but integer samples
])
def test_float_file_off_the_scale_is_a_named_skip_everywhere(tmp_path, capsys, name, samples, detail):
    """The input contract (fbank.check_clip) holds for decoded files too: training and
    validate read a float WAV on the int16 scale without a word (features ~90 dB too hot),
    extract and probe lost the batch to a bare ValueError."""
    from conftest import tiny_model
    from mae_ast.data.features import FeatureSpec, clip_features
    from mae_ast.loading import encode_clips, ready
    from mae_ast.tools import validate

    path = tmp_path / name
    sf.write(path, samples, 16000, subtype="FLOAT")
    sf.write(tmp_path / "good.wav", tone(), 16000)
    with pytest.raises(AudioError, match=rf"{name}: {detail}is not on the \[-1, 1\] scale .*re-save the file"):
        clip_features(str(path), FeatureSpec(), min_frames=16)

    write_manifest(tmp_path, [f"good.wav\t{len(tone())}", f"{name}\t{len(samples)}"])
    assert validate.main([str(tmp_path), "--workers", "1", "--splits", "train"]) == 1
    err = capsys.readouterr().err
    assert f"train.tsv:3: {path}: {detail}is not on the [-1, 1] scale" in err and "good.wav" not in err

    model = ready(tiny_model(), "cpu")
    (keys, out, bad), = encode_clips(model, [("good", str(path.with_name("good.wav"))), ("bad", str(path))], 4)
    assert keys == ["good"] and len(out["padding_mask"]) == 1
    assert [e.path for e in bad] == [str(path)] and "[-1, 1] scale" in bad[0].reason


def test_silent_float_file_keeps_its_policy(tmp_path):
    """The scale check passes digital silence: refused by training, read where allowed."""
    sf.write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="digital silence"):
        read_audio(str(tmp_path / "silent.wav"))
    assert not read_audio(str(tmp_path / "silent.wav"), allow_silence=True).any()


def test_read_audio_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.flac: file not found"):
        read_audio(str(tmp_path / "nope.flac"))


def test_mkv_without_audio_stream_is_an_error(tmp_path):
    import av

    path = str(tmp_path / "video.mkv")
    with av.open(path, "w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(AudioError, match="no audio stream"):
        read_audio(path)


def test_collater_crops_to_shortest_with_random_offsets():
    np.random.seed(0)
    ds = MAE_AST_Dataset(str(DEMO / "train.tsv"), min_keep_sample_size=32000, max_sample_size=250000)
    samples = [ds[i] for i in range(4)]
    batch = ds.collater(samples)
    shortest = min(len(s["source"]) for s in samples)
    src = batch["net_input"]["source"]
    assert src.shape == (4, shortest, 128) and batch["net_input"]["padding_mask"] is None  # nothing padded
    for i, s in enumerate(samples):  # each row is a contiguous window of its clip
        full = s["source"]
        starts = [o for o in range(len(full) - shortest + 1) if torch.equal(full[o : o + shortest], src[i])]
        assert starts, i


def test_dataset_features_are_the_fbank_of_the_audio():
    ds = MAE_AST_Dataset(str(DEMO / "valid.tsv"))
    item = ds[0]
    assert torch.equal(item["source"], fbank(read_audio(ds.paths[0])))


def test_num_tokens_counts_samples_capped_and_order_is_longest_first():
    ds = MAE_AST_Dataset(str(DEMO / "train.tsv"), max_sample_size=100000)
    assert all(ds.num_tokens(i) == min(ds.sizes[i], 100000) for i in range(len(ds)))
    order = ds.ordered_indices()
    assert sorted(order.tolist()) == list(range(len(ds)))
    assert (np.diff(ds.sizes[order]) <= 0).all()


def test_padding_mode_pads_and_marks_frames():
    ds = MAE_AST_Dataset(str(DEMO / "valid.tsv"), pad_audio=True)
    samples = [ds[0], ds[1]]
    batch = ds.collater(samples)
    lengths = [len(s["source"]) for s in samples]
    pad = batch["net_input"]["padding_mask"]
    assert pad.shape == (2, max(lengths))
    assert [int((~row).sum()) for row in pad] == lengths


def test_relative_paths_and_absolute_paths_both_load(tmp_path):
    shutil.copy(DEMO / "audio" / "speech_00.flac", tmp_path / "rel.flac")
    rows = ["rel.flac\t1", f"{DEMO / 'audio' / 'speech_01.flac'}\t1"]
    ds = MAE_AST_Dataset(write_manifest(tmp_path, rows, root="."))
    assert all(ds[i]["source"] is not None for i in range(2))


def test_empty_split_is_an_error_that_names_the_manifest(tmp_path):
    """Item 9: a split with only its root line, or every clip filtered, ended in an
    IndexError inside fairseq's data_utils."""
    (tmp_path / "train.tsv").write_text(f"{DEMO / 'audio'}\n")
    with pytest.raises(ManifestError, match=r"train.tsv: no clips to use .* add clips to this split"):
        MAE_AST_Dataset(str(tmp_path / "train.tsv"))
    with pytest.raises(ManifestError, match=r"valid.tsv: no clips to use \(8 shorter than min_sample_size=10000000"):
        MAE_AST_Dataset(str(DEMO / "valid.tsv"), min_keep_sample_size=10_000_000)


def test_manifest_root_that_does_not_exist_is_refused(tmp_path):
    """Item 10: training logged 'loss 0' updates, then failed with 'Invalid dummy batch'."""
    (tmp_path / "train.tsv").write_text("/no/such/folder\nspeech_00.flac\t40000\n")
    with pytest.raises(ManifestError, match=r"train.tsv:1: root folder /no/such/folder does not exist"):
        read_manifest(str(tmp_path / "train.tsv"))


def test_a_batch_of_only_bad_clips_still_counts_them(tmp_path):
    """Item 10: when every clip of a batch was bad the collater returned {} and fairseq
    swapped in its dummy batch, so the count was lost (21 skipped, 0 logged)."""
    from conftest import tiny_model
    from mae_ast.criterions.mae_ast_criterion import MAE_AST_Criterion

    rows = [f"missing_{i}.flac\t40000" for i in range(3)]
    ds = MAE_AST_Dataset(write_manifest(tmp_path, rows))
    batch = ds.collater([ds[i] for i in range(3)])
    assert batch["n_skipped"] == 3 and "net_input" not in batch
    model = tiny_model()
    loss, sample_size, log = MAE_AST_Criterion(None, 10.0, 1.0)(model, batch)
    assert float(loss) == 0.0 and sample_size == 0 and log["skipped_clips"] == 3
    loss.backward()  # tied to the parameters: every data-parallel rank reduces the same grads
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters() if p.requires_grad)


def test_batching_reports_the_clips_it_leaves_out(caplog):
    """Item 14: fairseq drops a last batch smaller than required_batch_size_multiple:
    with clips sorted by length, the same shortest clips every epoch, never reported."""
    ds = MAE_AST_Dataset(str(DEMO / "train.tsv"))  # 24 clips
    indices = ds.ordered_indices()[:21]
    with caplog.at_level(logging.WARNING):
        batches = ds.batch_by_size(indices, max_tokens=100_000_000, required_batch_size_multiple=8)
    assert sum(len(b) for b in batches) == 16
    message = next(r.message for r in caplog.records if "batching leaves out" in r.message)
    assert "leaves out 5 of 21 clips" in message and "required_batch_size_multiple=8" in message
    with pytest.raises(ManifestError, match=r"its 5 clips make no full batch .* set dataset.required_batch_size"):
        ds.batch_by_size(indices[:5], max_tokens=100_000_000, required_batch_size_multiple=8)


def test_truncated_file_is_skipped_by_the_dataset_using_the_manifest_length(tmp_path, caplog):
    """Item 8, through the dataset: the manifest's length column catches a wav cut short."""
    wav = np.sin(np.arange(48000) / 7.0).astype(np.float32) * 0.3
    sf.write(tmp_path / "cut.wav", wav[:16000], 16000)
    ds = MAE_AST_Dataset(write_manifest(tmp_path, ["cut.wav\t48000"]))
    with caplog.at_level(logging.WARNING):
        assert ds[0]["source"] is None
    assert any("truncated: decoded 16000 samples, the manifest says 48000" in r.message for r in caplog.records)
