"""What leaves a hospital: the ClientApp's replies, checked field by field.

A train reply may hold the packed G+D weights and declared scalars only; an audit reply
only aggregates (no real image, no per-image value about a real image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from client.client_app import audit, ledger_path, reply_fields, train
from client.site_audit import SYNTHETIC
from shared_models import protocol
from shared_models.config import RunConfig
from shared_models.gan import build_models
from shared_models.weights import pack
from simulations.sites import simulated_site

@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """Messages are built as a running ServerApp would (Flower takes ids from the task)."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 0)


TINY = RunConfig(hospitals=2, latent_dim=8, g_width=8, d_width=8, d_steps_per_round=2, d_steps_per_g_step=1, batch_size=16, warm_start="none")


def _context(tmp_path: Path) -> Context:
    return Context(run_id=0, node_id=1, node_config={"partition-id": 0, "ledger-dir": str(tmp_path / "ledger")}, state=RecordDict(), run_config={})


def _train_message(cfg: RunConfig) -> Message:
    g, d = build_models(cfg)
    content = RecordDict({protocol.ARRAYS: ArrayRecord(pack(g, d)), protocol.CONFIG: ConfigRecord({**cfg.to_flower(), protocol.SERVER_ROUND: 1})})
    return Message(content=content, message_type="train", dst_node_id=1)


def test_train_reply_holds_weights_and_declared_scalars_only(tmp_path):
    cfg = TINY
    reply = train(_train_message(cfg), _context(tmp_path))
    assert set(reply.content.keys()) == {protocol.ARRAYS, protocol.METRICS, protocol.INFO}
    g, d = build_models(cfg)
    expected = {k: tuple(v.shape) for k, v in pack(g, d).items()}
    arrays = reply.content[protocol.ARRAYS].to_torch_state_dict()
    assert {k: tuple(v.shape) for k, v in arrays.items()} == expected  # the model, nothing more
    metrics = dict(reply.content[protocol.METRICS])
    assert set(metrics) <= set(protocol.TRAIN_METRICS)
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    assert 0 < metrics["epsilon"] <= cfg.epsilon and metrics["steps"] == cfg.d_steps_per_round
    assert set(dict(reply.content[protocol.INFO])) == set(protocol.TRAIN_INFO)
    assert ledger_path("site-0", cfg, {"ledger-dir": str(tmp_path / "ledger")}).is_file()


def test_reply_fields_drop_undeclared_and_non_scalar_values(tmp_path):
    class Ledger:
        delta, accountant = 1e-5, "prv"

        def spent_epsilon(self) -> float:
            return 1.5

    leak = {"d_loss": 0.5, "per_sample_norms": [1.0, 2.0], "images": np.zeros((3, 32, 32)), "g_loss": np.zeros(4), "reason": ""}
    metrics, info = reply_fields(leak, "site-0", 10, Ledger())
    assert set(metrics) <= set(protocol.TRAIN_METRICS)
    assert metrics["d-loss"] == 0.5 and metrics["g-loss"] == 0.0  # an array is never passed on
    assert metrics["epsilon"] == 1.5 and metrics[protocol.NUM_EXAMPLES] == 10
    assert set(info) == set(protocol.TRAIN_INFO)


def _flat_values(record: dict) -> list:
    return [v for value in record.values() for v in (value if isinstance(value, list) else [value])]


def test_audit_reply_is_aggregates_only_and_catches_copies(tmp_path):
    cfg = TINY
    site = simulated_site(cfg, 0)
    n_syn = 37
    synthetic = site.train.images[:n_syn].copy()  # exact copies of this site's patients
    content = RecordDict({SYNTHETIC: ArrayRecord({"images": Array(synthetic)}), protocol.CONFIG: ConfigRecord(cfg.to_flower())})
    reply = audit(Message(content=content, message_type="query.audit", dst_node_id=1), _context(tmp_path))
    assert set(reply.content.keys()) == {"audit"}
    assert not reply.content.array_records  # no image goes back
    record = dict(reply.content["audit"])
    assert record["passed"] == 0 and record["flagged_count"] == n_syn
    sizes = {len(site.train), len(site.holdout), n_syn}
    for key, value in record.items():  # no per-image list: lists are fixed-size quantiles/histograms/reasons
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            assert len(value) not in sizes, key
            assert len(value) <= 21, key  # histogram edges: 21
    real = np.concatenate([site.train.images, site.holdout.images]).reshape(-1)
    numbers = np.array([v for v in _flat_values(record) if isinstance(v, float)])
    # not a single pixel value sequence: far fewer numbers than one image has pixels
    assert numbers.size < real.size // (len(site.train) + len(site.holdout))


@pytest.mark.parametrize("bad", [np.zeros((4, 1, 16, 16), np.float32), np.zeros((4, 32, 32), np.float32)])
def test_audit_refuses_mismatched_images(tmp_path, bad):
    content = RecordDict({SYNTHETIC: ArrayRecord({"images": Array(bad)}), protocol.CONFIG: ConfigRecord(TINY.to_flower())})
    with pytest.raises(ValueError, match="do not match"):
        audit(Message(content=content, message_type="query.audit", dst_node_id=1), _context(tmp_path))
