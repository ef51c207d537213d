"""The server side of the federated audit: send candidate images to every site, gather aggregates."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from client.site_audit import AUDIT_QUERY, SYNTHETIC
from shared_models import protocol
from shared_models.config import RunConfig


def audit_all_sites(grid: Grid, cfg: RunConfig, synthetic: np.ndarray, *, threshold: float | None = None, quantile: float = 0.99, timeout: float = 3600) -> list[dict[str, Any]]:
    """One ``query.audit`` message per connected site; returns one dict per reply (or error)."""
    node_ids = wait_for_sites(grid, cfg.hospitals, timeout=min(timeout, 300.0))
    config = {**cfg.to_flower(), "audit-quantile": float(quantile)}
    if threshold is not None:  # absent = each site calibrates on its own held-out images
        config["audit-threshold"] = float(threshold)
    content = RecordDict(
        {
            SYNTHETIC: ArrayRecord({"images": Array(np.ascontiguousarray(synthetic, dtype=np.float32))}),
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


def wait_for_sites(grid: Grid, expected: int, *, timeout: float, poll_s: float = 0.5) -> list[int]:
    """The connected sites, once ``expected`` of them are there (they connect asynchronously).

    After ``timeout`` the sites connected so far are audited; the release gate then refuses,
    because it requires an answer from every site.
    """
    deadline = time.monotonic() + timeout
    node_ids = list(grid.get_node_ids())
    while len(node_ids) < expected and time.monotonic() < deadline:
        time.sleep(poll_s)
        node_ids = list(grid.get_node_ids())
    return node_ids


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
