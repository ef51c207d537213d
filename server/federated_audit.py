"""The server side of the federated audit: send candidate images to every site, gather aggregates."""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from client.site_audit import AUDIT_QUERY, SYNTHETIC
from shared_models import protocol
from shared_models.config import RunConfig


def audit_all_sites(grid: Grid, cfg: RunConfig, synthetic: np.ndarray, *, threshold: float | None = None, quantile: float = 0.99, timeout: float = 3600) -> list[dict[str, Any]]:
    """One ``query.audit`` message per connected site; returns one dict per reply (or error)."""
    node_ids = list(grid.get_node_ids())
    config = {**cfg.to_flower(), "audit-threshold": -1.0 if threshold is None else float(threshold), "audit-quantile": float(quantile)}
    content = RecordDict(
        {
            SYNTHETIC: ArrayRecord({"images": np.ascontiguousarray(synthetic, dtype=np.float32)}),
            protocol.CONFIG: ConfigRecord(config),
        }
    )
    messages = [Message(content=content, message_type=f"query.{AUDIT_QUERY}", dst_node_id=node) for node in node_ids]
    results = []
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            results.append({"site": f"node-{reply.metadata.src_node_id}", "error": reply.error.reason})
        else:
            results.append(unflatten(dict(reply.content["audit"])))
    return sorted(results, key=lambda r: str(r.get("site")))


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """``a.b`` keys back into nested dicts (inverse of client.site_audit.flatten_scalars)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = list(value) if isinstance(value, (list, tuple)) else value
    return out
