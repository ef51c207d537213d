"""A hospital audits a candidate synthetic set against its own images, and says only aggregates.

The server sends synthetic images (not private) and the audit settings; the site
compares them with its training images and its held-out images and replies with
counts, fractions, quantiles and a verdict. No real image, and no per-image value
about a real image, is in the reply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from client.splits import SiteData
from privacy_audit.nn_compile import prefer_wide_vectors

AUDIT_QUERY = "audit"  # ClientApp query handler name: message type "query.audit"
SYNTHETIC = "synthetic"  # ArrayRecord key for the candidate images


def audit_site(site: SiteData, synthetic: np.ndarray, *, threshold: float | None = None, quantile: float = 0.99, epsilon: float | None = None, delta: float | None = None, accountant: str = "") -> dict[str, Any]:
    """Memorization audit of ``synthetic`` at one site -> JSON-able aggregate figures."""
    prefer_wide_vectors()  # a SuperNode process may reach numba first here
    from privacy_audit.memorization import audit_memorization

    if synthetic.ndim != 4 or synthetic.shape[1:] != site.train.images.shape[1:]:
        raise ValueError(f"synthetic images {synthetic.shape[1:]} do not match site images {site.train.images.shape[1:]}")
    report = audit_memorization(site.train.images, synthetic.astype(np.float32), site.holdout.images, threshold=threshold, quantile=quantile)
    out = dict(report.to_aggregate())
    out.update({"site": site.name, "n_train": len(site.train), "n_holdout": len(site.holdout)})
    if epsilon is not None:
        out.update({"epsilon": float(epsilon), "delta": float(delta or 0.0), "accountant": accountant})
    return out


def flatten_scalars(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested aggregate dict -> flat scalar (and float-list) entries for Flower records."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_scalars(value, f"{name}."))
        elif isinstance(value, bool):
            flat[name] = int(value)
        elif isinstance(value, (int, float, str)):
            flat[name] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            flat[name] = [float(v) for v in value]
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            flat[name] = list(value)  # reasons: short strings about the verdict
        elif value is None:
            continue
        else:
            raise TypeError(f"audit field {name!r} is not an aggregate scalar ({type(value).__name__})")
    return flat
