"""The loading API and the command-line tools."""

import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from audio_files import encode_audio, sine
from conftest import BIN, DEMO, ROOT, run_cli
import mae_ast
from mae_ast.checkpoints import CheckpointError


def test_load_gives_eval_model_matching_fairseq_loader(frame_checkpoint):
    from fairseq import checkpoint_utils

    model = mae_ast.load(str(frame_checkpoint), device="cpu")
    assert not model.training and model.encoder.layerdrop == 0
    ref = checkpoint_utils.load_model_ensemble_and_task([str(frame_checkpoint)])[0][0].eval()
    x = torch.randn(2, 300, 128)
    with torch.no_grad():
        assert torch.allclose(model(x, mask=False)["x"], ref(x, mask=False)["x"], atol=1e-6)


def test_load_without_fairseq_installed(frame_checkpoint):
    """In a process where importing fairseq fails, loading and extraction still work."""
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "fairseq" or name.startswith("fairseq."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import torch, mae_ast
assert not mae_ast.HAVE_FAIRSEQ and "fairseq" not in sys.modules
model = mae_ast.load({str(frame_checkpoint)!r}, device="cpu")
out = model.extract_layers([torch.randn(16000) * 0.1])
print(tuple(out["last_hidden_state"].shape), len(out["hidden_states"]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("(1, 49, 64) 2")


def test_not_a_checkpoint_names_the_problem(tmp_path):
    torch.save({"cfg": {}, "model": {"weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"not a MAE-AST checkpoint: its model lacks \['post_extract_proj"):
        mae_ast.load(str(tmp_path / "other.pt"))
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="expected keys 'cfg' and 'model'"):
        mae_ast.load(str(tmp_path / "tensor.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        mae_ast.load(str(tmp_path / "junk.pt"))


def test_manifest_tool_writes_original_format(tmp_path):
    audio = tmp_path / "audio"
    shutil.copytree(DEMO / "audio", audio)
    (audio / "broken.flac").write_bytes(b"nope" * 10)
    out = tmp_path / "manifests"
    proc = run_cli(str(BIN / "mae-ast-manifest"), str(audio), "--out", str(out),
                   "--valid-percent", "0.2", "--test-percent", "0.1", "--seed", "3")
    assert proc.returncode == 1  # one unreadable file
    assert "broken.flac" in proc.stderr and "41 files found" in proc.stdout
    rows = {}
    for split in ("train", "valid", "test"):
        lines = (out / f"{split}.tsv").read_text().splitlines()
        assert lines[0] == str(audio)
        rows[split] = [line.split("\t") for line in lines[1:]]
    counts = [len(r) for r in rows.values()]  # each clip placed by a hash of its name: 0.2/0.1 on average
    assert sum(counts) == 40 and counts[0] > counts[1] > 0 and counts[2] > 0
    reference = {}
    for split in ("train", "valid", "test"):
        for line in (DEMO / f"{split}.tsv").read_text().splitlines()[1:]:
            name, size = line.split("\t")
            reference[name] = size
    assert all(reference[name] == size for r in rows.values() for name, size in r if not name.endswith(".mkv"))
    # Matroska: the segment's stated duration (no decode), a few ms above the decoded length
    # the demo manifests hold, well inside the truncation tolerance
    import av

    from mae_ast.data.audio_io import TRUNCATION_TOLERANCE, TRUNCATION_TOLERANCE_S

    mkv = []
    for name, size in (row for r in rows.values() for row in r if row[0].endswith(".mkv")):
        with av.open(str(audio / name)) as container:
            rate = container.streams.audio[0].rate
        mkv.append((int(reference[name]), int(size), rate))
    assert mkv and all(0 <= size - decoded <= max(TRUNCATION_TOLERANCE * decoded, TRUNCATION_TOLERANCE_S * rate)
                       for decoded, size, rate in mkv), mkv
    # The same seed gives the same split.
    again = tmp_path / "again"
    run_cli(BIN / "mae-ast-manifest", audio, "--out", again, "--valid-percent", "0.2", "--test-percent", "0.1",
            "--seed", "3", fresh=True)  # its own process: another str hash seed
    assert (again / "valid.tsv").read_text() == (out / "valid.tsv").read_text()


def test_extract_cli_writes_features_and_reports_bad_files(tmp_path, frame_checkpoint):
    audio = tmp_path / "in"
    (audio / "sub").mkdir(parents=True)
    shutil.copy(DEMO / "audio" / "speech_00.flac", audio / "a.flac")
    shutil.copy(DEMO / "audio" / "env_06.mkv", audio / "sub" / "b.mkv")
    (audio / "bad.wav").write_bytes(b"RIFF" + os.urandom(100))
    out = tmp_path / "feats"
    proc = run_cli(str(BIN / "mae-ast-extract"), str(frame_checkpoint), str(audio), "--out", str(out),
                   "--layer", "1", "--batch-size", "2", "--device", "cpu")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "bad.wav" in proc.stderr and "wrote 2 feature files (layer 1 of 2" in proc.stdout
    a = np.load(out / "a.flac.npy")
    b = np.load(out / "sub" / "b.mkv.npy")
    model = mae_ast.load(str(frame_checkpoint), device="cpu")
    from mae_ast.data import read_audio

    with torch.no_grad():
        ref = model.extract_layers([read_audio(str(audio / "a.flac"))])["hidden_states"][0][0]
    assert a.shape == tuple(ref.shape) and np.allclose(a, ref.numpy(), atol=1e-4)
    with torch.no_grad():  # stopping at layer 1 gives the same layer-1 states
        early = model.extract_layers([read_audio(str(audio / "a.flac"))], output_layer=1)["hidden_states"]
    assert len(early) == 1 and torch.allclose(early[0][0], ref, atol=1e-6)
    assert b.ndim == 2 and b.shape[1] == model.cfg.encoder_embed_dim


@pytest.mark.parametrize("which", ["frame_checkpoint", "patch_checkpoint"])
def test_show_cli_writes_a_png(request, tmp_path, which):
    ckpt = request.getfixturevalue(which)
    png = tmp_path / "fig.png"
    proc = run_cli(str(BIN / "mae-ast-show"), str(ckpt), str(DEMO / "audio" / "speech_02.flac"),
                   "--out", str(png))
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1000, 900)
    assert "masked" in proc.stdout


def _opus(path, seconds=2.0):
    encode_audio(path, sine(seconds, 48000, freq=330.0), 48000, container="ogg")


def test_extract_keeps_extensions_and_reads_every_audio_extension(tmp_path, frame_checkpoint):
    """Items 6 and 16: a.flac and a.wav both wrote a.npy (3 "written" for 2 files), and
    .opus was not in the tool's own extension list."""
    import soundfile as sf

    from mae_ast.data import read_audio

    audio = tmp_path / "in"
    audio.mkdir()
    shutil.copy(DEMO / "audio" / "speech_00.flac", audio / "a.flac")
    sf.write(audio / "a.wav", read_audio(str(DEMO / "audio" / "speech_01.flac")).numpy(), 16000)
    _opus(audio / "c.opus")
    out = tmp_path / "feats"
    proc = run_cli(str(BIN / "mae-ast-extract"), str(frame_checkpoint), str(audio), "--out", str(out),
                   "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote 3 feature files" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["a.flac.npy", "a.wav.npy", "c.opus.npy"]
    assert np.load(out / "a.flac.npy").shape != np.load(out / "a.wav.npy").shape  # two different clips


def test_extract_refuses_inputs_that_share_an_output_before_writing(tmp_path, frame_checkpoint):
    manifest = tmp_path / "twice.tsv"
    manifest.write_text(f"{DEMO / 'audio'}\nspeech_00.flac\t1\nspeech_00.flac\t1\n")
    out = tmp_path / "feats"
    proc = run_cli(str(BIN / "mae-ast-extract"), str(frame_checkpoint), str(manifest), "--out", str(out))
    assert proc.returncode == 2 and "would both be written to speech_00.flac.npy" in proc.stderr
    assert not out.exists()


def test_extract_writes_only_under_out(tmp_path, frame_checkpoint):
    """Issue 21 item 9: a manifest entry outside its root (``../x/a.flac``) wrote outside --out."""
    (tmp_path / "x").mkdir()
    (tmp_path / "root").mkdir()
    shutil.copy(DEMO / "audio" / "speech_00.flac", tmp_path / "x" / "a.flac")
    shutil.copy(DEMO / "audio" / "speech_01.flac", tmp_path / "root" / "b.flac")
    manifest = tmp_path / "root" / "test.tsv"
    manifest.write_text(f"{tmp_path / 'root'}\n../x/a.flac\t1\nb.flac\t1\n")
    out = tmp_path / "out" / "feats"
    proc = run_cli(str(BIN / "mae-ast-extract"), str(frame_checkpoint), str(manifest), "--out", str(out),
                   "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote 2 feature files" in proc.stdout
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.npy"))
    assert written == ["out/feats/_up_/x/a.flac.npy", "out/feats/b.flac.npy"]


def test_show_computes_the_checkpoints_own_features(tmp_path):
    """Items 1 and 5: a deltas model's PNG regrouped 128 columns as 24 blocks, and an
    overlapping-stride model drew a 192-bin, 770-frame "input" for a 480-frame clip."""
    from conftest import task_cfg, tiny_model
    from mae_ast.tools.show import reconstruct
    from test_input_contract import save_checkpoint, speechlike

    wav = speechlike(4.83)  # 481 frames
    for model, width, frames in ((tiny_model(kt=16, kc=16, st=10), 128, 476),
                                 (tiny_model(kt=16, kc=16, task=task_cfg("chunk_mask", deltas=True)), 384, 480)):
        ckpt = save_checkpoint(model, tmp_path / "m.pt", deltas=model.feature_spec.deltas)
        loaded = mae_ast.load(ckpt, device="cpu")
        panels = reconstruct(loaded, loaded.feature_spec.compute(wav))
        assert panels["input"].shape == (frames, width)
        assert 0.5 < (panels["mask"] > 0).mean() < 1
        image = (loaded.normalize(loaded.feature_spec.compute(wav)[None])[0, :frames]).numpy()
        assert np.allclose(panels["input"], image, atol=1e-5)
        png = tmp_path / "fig.png"
        proc = run_cli(str(BIN / "mae-ast-show"), ckpt, str(DEMO / "audio" / "speech_02.flac"),
                       "--out", str(png))
        assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]
        assert "DEBUG" not in proc.stderr and "DEBUG" not in proc.stdout


def test_show_and_load_report_bad_input_in_one_line(tmp_path, frame_checkpoint):
    """Item 17: no traceback for bad audio, and a text file is named as such."""
    (tmp_path / "notes.txt").write_text("these are my notes\n")
    (tmp_path / "x.flac").mkdir()
    proc = run_cli(str(BIN / "mae-ast-show"), str(frame_checkpoint), str(tmp_path / "x.flac"),
                   "--out", str(tmp_path / "fig.png"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "x.flac: is a directory, not an audio file" in proc.stderr
    with pytest.raises(CheckpointError, match="not a torch checkpoint \\(the file is text"):
        mae_ast.load(str(tmp_path / "notes.txt"))
    with pytest.raises(CheckpointError, match="is a directory"):
        mae_ast.load(str(tmp_path / "x.flac"))


def test_manifest_tool_never_writes_an_empty_split(tmp_path):
    """Item 9: --valid-percent 0.01 on a small folder wrote an empty valid.tsv, exit 0."""
    audio = tmp_path / "audio"
    audio.mkdir()
    for name in ("speech_00.flac", "speech_01.flac", "env_00.flac", "env_01.flac", "speech_02.flac"):
        shutil.copy(DEMO / "audio" / name, audio / name)
    out = tmp_path / "m"
    proc = run_cli(str(BIN / "mae-ast-manifest"), str(audio), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len((out / "valid.tsv").read_text().splitlines()) == 2  # root + one clip
    assert len((out / "train.tsv").read_text().splitlines()) == 5
    assert "fewer than fairseq's default dataset.required_batch_size_multiple=8" in proc.stderr


def test_validate_flags_clips_shorter_than_one_patch(tmp_path):
    """Item 13: training skips clips shorter than one patch; validate did not flag them."""
    import soundfile as sf

    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "short.wav", 0.1 * np.sin(np.arange(2000) / 5.0), 16000)  # 11 frames
    shutil.copy(DEMO / "audio" / "speech_00.flac", tmp_path / "audio" / "ok.flac")
    ok_len = int(DEMO.joinpath("train.tsv").read_text().split("speech_00.flac\t")[1].split()[0])
    (tmp_path / "train.tsv").write_text(f"audio\nshort.wav\t2000\nok.flac\t{ok_len}\n")
    run = [str(BIN / "mae-ast-validate"), str(tmp_path), "--workers", "1"]
    proc = run_cli(*run)
    assert proc.returncode == 1
    assert "train.tsv:2" in proc.stderr and "shorter than one patch (16 frames" in proc.stderr
    frame_model = run_cli(*run, "--patch-frames", "2")
    assert frame_model.returncode == 0, frame_model.stderr


def test_named_splits_must_exist(tmp_path, capsys):
    """validate split --splits on ',' alone: "train, valid" looked for " valid.tsv" and skipped it,
    as it skipped any named split without a manifest. Any fairseq split name is a split
    (dev_other.tsv), so a missing one lists those the folder has."""
    from mae_ast.tools import validate

    data = tmp_path / "data"
    data.mkdir()
    rows = (DEMO / "valid.tsv").read_text().splitlines()[1:]
    (data / "train.tsv").write_text(f"{DEMO / 'audio'}\n{rows[0]}\n")
    name, size = rows[1].split("\t")
    (data / "dev_other.tsv").write_text(f"{DEMO / 'audio'}\n{name}\t{int(size) * 2}\n")  # a truncated clip
    assert validate.main([str(data), "--workers", "1", "--splits", "train, dev_other"]) == 1
    assert "dev_other.tsv:2" in capsys.readouterr().err
    for args, message in (([str(data), "--splits", "train,test"], "no test.tsv; write it first, or name only the "
                           "splits the folder has (--splits dev_other,train)"),
                          ([str(data), "--splits", "train.tsv"], "not file names"),
                          ([str(tmp_path / "none"), "--splits", "train"], "none: not a folder")):
        with pytest.raises(SystemExit) as exit_:
            validate.main(args)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_cache_checks_splits_and_output_before_any_work(tmp_path, capsys):
    """Issue 21 item 14: a folder without valid.tsv cached train, then a traceback; an
    unwritable --out gave a traceback."""
    from mae_ast.tools import cache

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DEMO / "train.tsv", data / "train.tsv")
    out = tmp_path / "cache"
    with pytest.raises(SystemExit) as exit_:
        cache.main([str(data), "--out", str(out)])
    assert exit_.value.code == 2 and "no valid.tsv" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as exit_:
        cache.main([str(data), "--out", "/proc/nope", "--splits", "train"])
    assert exit_.value.code == 2 and "--out /proc/nope" in capsys.readouterr().err
