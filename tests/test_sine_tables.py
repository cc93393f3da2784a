"""model.save_sine_tables=false (issue 26 target 7): checkpoints without the fixed sinusoidal
tables, recomputed on load; the default keeps them for the original's strict loaders."""

import io

import pytest
import torch
from fairseq import checkpoint_utils

import mae_ast
from conftest import hydra_train, make_batch, tiny_model
from mae_ast.models.transformer import SinusoidalPositionalEncoding

TABLES = ("enc_sine_pos_embed.pe", "dec_sine_pos_embed.pe")


def saved_bytes(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


def test_unsaved_tables_leave_the_state_and_come_back_on_load():
    torch.manual_seed(0)
    lean = tiny_model(save_sine_tables=False).eval()
    state = lean.state_dict()
    assert not set(TABLES) & set(state)
    full = tiny_model().state_dict()
    assert set(full) - set(state) == set(TABLES)
    table_bytes = sum(full[k].numel() * 4 for k in TABLES)
    assert saved_bytes(full) - saved_bytes(state) >= table_bytes

    for saved in (True, False):  # either setting loads either kind of state, strictly
        with_tables = {**state, **{k: getattr(lean, k.split(".")[0]).pe for k in TABLES}}
        for source in (state, with_tables):
            model = tiny_model(save_sine_tables=saved).eval()
            model.load_state_dict(source, strict=True)
            x = make_batch(B=1, frames=160)
            with torch.no_grad():
                torch.testing.assert_close(model.forward_features(x)["x"], lean.forward_features(x)["x"],
                                           rtol=0, atol=0)


@pytest.mark.slow
def test_a_fairseq_run_without_tables_loads_with_fairseqs_loader_and_ours(tmp_path):
    run = tmp_path / "run"
    proc = hydra_train(
        run, "model.encoder_layers=1", "model.decoder_layers=1", "model.encoder_embed_dim=64",
        "model.decoder_embed_dim=64", "model.encoder_ffn_embed_dim=128", "model.encoder_attention_heads=4",
        "model.save_sine_tables=false", "common.cpu=true", "optimization.max_update=2", "dataset.num_workers=0",
        "distributed_training.distributed_world_size=1", "distributed_training.nprocs_per_node=1",
        "dataset.max_tokens=1000000")
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = run / "checkpoints" / "checkpoint_last.pt"
    state = torch.load(path, weights_only=False)
    assert state["cfg"]["model"]["save_sine_tables"] is False
    assert not set(TABLES) & set(state["model"])

    fresh = SinusoidalPositionalEncoding(64, 48000).pe
    (model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    for name in ("enc_sine_pos_embed", "dec_sine_pos_embed"):
        assert torch.equal(getattr(model, name).pe, fresh)
    ours = mae_ast.load(str(path), device="cpu")
    wav = [torch.randn(16000, generator=torch.Generator().manual_seed(1)) * 0.1]
    layers = ours.extract_layers(wav)
    assert torch.isfinite(layers["last_hidden_state"]).all()
