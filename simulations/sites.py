"""What each simulated hospital holds: one data set, partitioned, then split train/held-out.

Every party (each client, the audit, the report) rebuilds the same split from the run
config alone, so no index list ever travels.
"""

from __future__ import annotations

from client.dataset import ImageSet
from client.splits import SiteData, split_site
from shared_models.config import RunConfig
from simulations.partition import partition


def load_source(cfg: RunConfig) -> ImageSet:
    """The whole simulated data set (``demo`` or a path) at the run's image size."""
    from client.loaders import load_images

    data, _problems = load_images(cfg.data, cfg.image_size)
    return data


def site_name(partition_id: int) -> str:
    return f"site-{partition_id}"


def simulated_site(cfg: RunConfig, partition_id: int, data: ImageSet | None = None) -> SiteData:
    """Hospital ``partition_id`` of ``cfg.hospitals``, deterministic under ``cfg.seed``."""
    if not 0 <= partition_id < cfg.hospitals:
        raise ValueError(f"partition-id {partition_id} outside 0..{cfg.hospitals - 1}")
    data = load_source(cfg) if data is None else data
    parts = partition(data, cfg.hospitals, cfg.partition, cfg.seed)
    return split_site(site_name(partition_id), data.subset(parts[partition_id]), cfg.holdout_fraction, cfg.seed + partition_id)
