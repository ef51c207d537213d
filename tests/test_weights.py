"""G+D travel as one prefixed state dict; checkpoints round-trip exactly and atomically."""

import pytest
import torch

from shared_models.config import RunConfig
from shared_models.gan import build_models
from shared_models.weights import load_checkpoint, load_packed, pack, save_checkpoint, unpack


def test_pack_unpack_round_trip(tmp_path):
    cfg = RunConfig(g_width=8, d_width=8, latent_dim=8)
    g, d = build_models(cfg)
    state = pack(g, d)
    assert all(k.startswith(("g.", "d.")) for k in state)
    save_checkpoint(tmp_path / "c.safetensors", state, {"round": 3})
    loaded, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert meta == {"round": 3}
    assert list(tmp_path.iterdir()) == [tmp_path / "c.safetensors"]  # no temp file left
    g2, d2 = build_models(cfg.replace(seed=99))
    assert not torch.equal(next(g2.parameters()), next(g.parameters()))
    load_packed(g2, d2, loaded)
    for a, b in zip(pack(g, d).values(), pack(g2, d2).values()):
        assert torch.equal(a, b)


def test_unpack_rejects_foreign_state_and_corrupt_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not a packed"):
        unpack({"conv.weight": torch.zeros(1)})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.safetensors: not a readable"):
        load_checkpoint(bad)
