"""FedAvg over the packed G+D weights, keeping each site's figures for the round log.

Sites whose privacy budget is spent reply without training (``stopped``); their
unchanged weights are left out of the average, which would otherwise pull the model
back towards the previous round.
"""

from __future__ import annotations

from logging import INFO as LOG_INFO
from typing import Any, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords, aggregate_metricrecords

from shared_models import protocol


class SynthFedAvg(FedAvg):
    """FedAvg that records per-site metrics and skips sites that stopped training."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(weighted_by_key=protocol.NUM_EXAMPLES, **kwargs)
        self.last_sites: list[dict[str, Any]] = []

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """No federated evaluation while training: a GAN's quality is judged by the audit."""
        return []

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, errors = self._check_and_log_replies(list(replies), is_train=True)
        self.last_sites = [site_record(msg) for msg in valid]
        self.last_sites += [{"site": f"node-{m.metadata.src_node_id}", "error": m.error.reason} for m in errors]
        trained = [m.content for m in valid if not m.content[protocol.METRICS]["stopped"]]
        if not trained:
            log(LOG_INFO, "round %s: no site trained (all budgets spent); weights unchanged", server_round)
            return None, None
        return (
            aggregate_arrayrecords(trained, self.weighted_by_key),
            aggregate_metricrecords(trained, self.weighted_by_key),
        )


def site_record(msg: Message) -> dict[str, Any]:
    """One site's line in the round log, from its reply's metrics and info."""
    metrics = msg.content[protocol.METRICS]
    info = msg.content[protocol.INFO] if protocol.INFO in msg.content else {}
    out: dict[str, Any] = {k.replace("-", "_"): metrics[k] for k in metrics}
    out["stopped"] = bool(out.get("stopped", 0))
    out.update({k: str(v) for k, v in info.items()})
    out.setdefault("site", f"node-{msg.metadata.src_node_id}")
    return out
