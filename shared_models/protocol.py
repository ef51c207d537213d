"""Names of what travels in Flower messages, in one place for server and clients.

A train reply holds exactly: the packed G+D weights (ARRAYS), scalar metrics (METRICS)
and short strings (INFO). Nothing else may leave a hospital: no images, no per-sample
values. ``reply_is_clean`` is the check the client applies before sending.
"""

from __future__ import annotations

ARRAYS, CONFIG, METRICS, INFO = "arrays", "config", "metrics", "info"
NUM_EXAMPLES = "num-examples"  # FedAvg's weighting key
SERVER_ROUND = "server-round"  # injected by Flower's FedAvg into every train config

# scalar metrics a train reply carries (trainer dict keys with "_" -> "-")
TRAIN_METRICS = (
    "num-examples",
    "d-loss",
    "g-loss",
    "epsilon",
    "delta",
    "noise-multiplier",
    "sample-rate",
    "steps",
    "stopped",
    "time-s",
)
# short strings a train reply carries
TRAIN_INFO = ("site", "reason", "accountant")
