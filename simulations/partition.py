"""Split one data set across simulated hospitals, and each hospital's data into train/held-out.

All splits are deterministic under a seed, so the server, every client and a later
audit rebuild exactly the same partition without ever sending indices around.
"""

from __future__ import annotations

import numpy as np

from client.dataset import ImageSet


def parse_scheme(scheme: str) -> tuple[str, float]:
    """``iid`` | ``dirichlet:ALPHA`` | ``source`` -> (kind, alpha)."""
    kind, _, arg = scheme.partition(":")
    if kind == "iid" and not arg:
        return "iid", 0.0
    if kind == "source" and not arg:
        return "source", 0.0
    if kind == "dirichlet":
        try:
            alpha = float(arg or "0.5")
        except ValueError:
            alpha = -1.0
        if alpha > 0:
            return "dirichlet", alpha
    raise ValueError(f"partition must be iid, dirichlet:ALPHA (ALPHA > 0) or source, got {scheme!r}")


def partition(data: ImageSet, n_sites: int, scheme: str, seed: int = 0) -> list[np.ndarray]:
    """Indices of ``data`` held by each of ``n_sites`` hospitals (disjoint, covering all)."""
    kind, alpha = parse_scheme(scheme)
    n = len(data)
    if n_sites < 1 or n < n_sites:
        raise ValueError(f"cannot split {n} images across {n_sites} hospitals")
    rng = np.random.default_rng(seed)
    if kind == "iid":
        parts = np.array_split(rng.permutation(n), n_sites)
    elif kind == "dirichlet":
        if data.labels is None:
            raise ValueError("dirichlet partition needs class labels; this data set has none")
        parts = _dirichlet(data.labels, n_sites, alpha, rng)
    else:
        parts = _by_source(data, n_sites, rng)
    out = [np.sort(p).astype(np.int64) for p in parts]
    empty = [i for i, p in enumerate(out) if len(p) == 0]
    if empty:
        raise ValueError(f"partition {scheme!r} left hospital(s) {empty} with no images; use fewer hospitals")
    return out


def _dirichlet(labels: np.ndarray, n_sites: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Label skew: each class is spread over sites with Dirichlet(alpha) proportions."""
    buckets: list[list[int]] = [[] for _ in range(n_sites)]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        shares = rng.dirichlet(np.full(n_sites, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
        for site, chunk in enumerate(np.split(idx, cuts)):
            buckets[site].extend(chunk.tolist())
    # a site left empty by extreme skew takes one image from the largest site
    for site in range(n_sites):
        if not buckets[site]:
            donor = max(range(n_sites), key=lambda s: len(buckets[s]))
            buckets[site].append(buckets[donor].pop())
    return [np.asarray(b, dtype=np.int64) for b in buckets]


def _by_source(data: ImageSet, n_sites: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Each source (modality/origin, else group) goes whole to one site, round-robin by size."""
    keys = data.domains if data.domains is not None else data.groups
    if keys is None:
        raise ValueError("source partition needs per-image domains or groups; this data set has neither")
    sources = sorted(set(keys.tolist()), key=lambda s: (-int(np.sum(keys == s)), str(s)))
    if len(sources) < n_sites:
        raise ValueError(f"source partition: {len(sources)} sources for {n_sites} hospitals")
    buckets: list[list[int]] = [[] for _ in range(n_sites)]
    for src in sources:  # largest first, each to the currently smallest site
        site = min(range(n_sites), key=lambda s: len(buckets[s]))
        buckets[site].extend(np.flatnonzero(keys == src).tolist())
    return [rng.permutation(np.asarray(b, dtype=np.int64)) for b in buckets]
