"""The Flower ClientApp: one hospital's DP training round, and nothing but weights out.

Where the data comes from is the node's business: a real hospital's SuperNode names its
folder in node-config (``data-path``), a simulated one gets a ``partition-id``. The run
config travels in every train message, so server and sites always agree on it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.splits import SiteData
from shared_models import protocol
from shared_models.config import RunConfig, resolve_device
from shared_models.gan import build_models
from shared_models.weights import load_packed, pack

app = ClientApp()

PLAN_KEY = "dp-plan"  # context.state record: the noise multiplier fixed for this run


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Load the global G+D, run one DP round on local data, reply with weights + scalars."""
    started = time.monotonic()
    values = dict(msg.content[protocol.CONFIG])
    values.pop(protocol.SERVER_ROUND, None)
    cfg = RunConfig.from_flower(values)
    site = load_site(context.node_config, cfg)
    g, d = build_models(cfg)
    load_packed(g, d, msg.content[protocol.ARRAYS].to_torch_state_dict())
    metrics, info = train_site(g, d, site, cfg, context.node_config, context.state)
    metrics["time-s"] = time.monotonic() - started
    content = RecordDict(
        {
            protocol.ARRAYS: ArrayRecord(pack(g, d)),
            protocol.METRICS: MetricRecord(metrics),
            protocol.INFO: ConfigRecord(info),
        }
    )
    return Message(content, reply_to=msg)


def train_site(g: Any, d: Any, site: SiteData, cfg: RunConfig, node_config: Mapping[str, Any], state: RecordDict) -> tuple[dict[str, float | int], dict[str, str]]:
    """One round at one site; returns (scalar metrics, short strings) for the reply."""
    from client.accounting import default_delta, noise_multiplier_for
    from client.dp_trainer import train_round
    from client.ledger import PrivacyLedger

    n = len(site.train)
    target = min(cfg.epsilon, float(node_config.get("max-epsilon", cfg.epsilon)))
    delta = cfg.delta or default_delta(n)
    ledger = PrivacyLedger(ledger_path(site.name, cfg, node_config), target_epsilon=target, delta=delta, accountant=cfg.accountant)
    sample_rate = min(1.0, cfg.batch_size / n)
    reason = ""
    if PLAN_KEY in state.config_records:
        sigma = float(state.config_records[PLAN_KEY]["noise-multiplier"])
    elif cfg.noise_multiplier > 0:
        sigma = cfg.noise_multiplier
    else:
        steps = cfg.num_server_rounds * cfg.d_steps_per_round
        try:
            sigma = noise_multiplier_for(target, ledger.delta, sample_rate, steps, prior_history=ledger.history, accountant=cfg.accountant)
        except ValueError as exc:  # budget already spent by earlier runs
            sigma, reason = 0.0, str(exc)
    state.config_records[PLAN_KEY] = ConfigRecord({"noise-multiplier": sigma})
    if reason:
        result: dict[str, Any] = {"stopped": True, "reason": reason, "epsilon": ledger.spent_epsilon()}
    else:
        result = train_round(g, d, site.train, cfg, ledger, noise_multiplier=sigma, device=resolve_device(cfg.device), seed=cfg.seed)
    return reply_fields(result, site.name, n, ledger)


def reply_fields(result: Mapping[str, Any], site: str, n: int, ledger: Any) -> tuple[dict[str, float | int], dict[str, str]]:
    """Keep only the declared scalar metrics and strings: nothing else may leave the site."""
    metrics: dict[str, float | int] = {k: 0.0 for k in protocol.TRAIN_METRICS}
    for key, value in result.items():
        name = key.replace("_", "-")
        if name in protocol.TRAIN_METRICS and isinstance(value, (int, float, bool)):
            metrics[name] = int(value) if isinstance(value, bool) else value
    metrics[protocol.NUM_EXAMPLES] = n
    metrics["delta"] = float(ledger.delta)
    metrics["epsilon"] = float(ledger.spent_epsilon())
    info = {"site": site, "reason": str(result.get("reason", "")), "accountant": str(ledger.accountant)}
    return metrics, info


def load_site(node_config: Mapping[str, Any], cfg: RunConfig) -> SiteData:
    """A real hospital's folder (``data-path``) or a simulated partition (``partition-id``)."""
    if "data-path" in node_config:
        from client.loaders import load_images
        from client.splits import split_site

        path = str(node_config["data-path"])
        data, _problems = load_images(path, cfg.image_size)
        name = str(node_config.get("site-name") or Path(path).resolve().name)
        return split_site(name, data, cfg.holdout_fraction, cfg.seed)
    from simulations.sites import simulated_site

    return simulated_site(cfg, int(node_config["partition-id"]))


def ledger_path(site: str, cfg: RunConfig, node_config: Mapping[str, Any]) -> Path:
    """The site's ledger file: node-config wins (the hospital decides), then the run config."""
    root = node_config.get("ledger-dir") or cfg.ledger_dir or str(Path.home() / ".fedsynth" / "ledger")
    return Path(str(root)) / f"{site}.json"


@app.query("audit")
def audit(msg: Message, context: Context) -> Message:
    """Federated audit: check candidate synthetic images against local data, reply aggregates."""
    from client.ledger import PrivacyLedger
    from client.site_audit import SYNTHETIC, audit_site, flatten_scalars

    values = dict(msg.content[protocol.CONFIG])
    given = values.pop("audit-threshold", None)  # absent: calibrate on the held-out images
    quantile = float(values.pop("audit-quantile", 0.99))
    cfg = RunConfig.from_flower(values)
    site = load_site(context.node_config, cfg)
    synthetic = msg.content[SYNTHETIC]["images"].numpy()
    path = ledger_path(site.name, cfg, context.node_config)
    spent = PrivacyLedger.read_only(path) if path.is_file() else None
    result = audit_site(
        site,
        synthetic,
        threshold=None if given is None else float(given),
        quantile=quantile,
        epsilon=spent.spent_epsilon() if spent else 0.0,
        delta=spent.delta if spent else 0.0,
        accountant=spent.accountant if spent else "none (site never trained)",
    )
    return Message(RecordDict({"audit": ConfigRecord(flatten_scalars(result))}), reply_to=msg)
