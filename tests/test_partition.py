"""Partitioning across hospitals and held-out splits: disjoint, deterministic, slab-wise."""

import numpy as np
import pytest

from client.dataset import ImageSet
from client.splits import holdout_split
from simulations.partition import parse_scheme, partition


def make_set(n=120, classes=6, groups=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32)
    labels = np.arange(n) % classes
    grp = np.array([f"vol{i % groups}" for i in range(n)])
    pos = np.arange(n) // groups
    dom = np.array(["CT" if i % groups < 2 else "MRI" for i in range(n)])
    return ImageSet(images, labels.astype(np.int64), [f"c{k}" for k in range(classes)], grp, pos.astype(float), dom)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet:0.5", "source"])
def test_partitions_are_disjoint_cover_all_and_deterministic(scheme):
    data = make_set()
    parts = partition(data, 2 if scheme == "source" else 3, scheme, seed=7)
    allidx = np.concatenate(parts)
    assert sorted(allidx.tolist()) == list(range(len(data)))
    again = partition(data, len(parts), scheme, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_iid_sizes_balanced_and_seed_matters():
    data = make_set()
    parts = partition(data, 3, "iid", seed=1)
    assert [len(p) for p in parts] == [40, 40, 40]
    assert not np.array_equal(parts[0], partition(data, 3, "iid", seed=2)[0])


def test_dirichlet_small_alpha_skews_labels():
    data = make_set(n=600)
    parts = partition(data, 3, "dirichlet:0.05", seed=0)
    # with alpha 0.05 most classes land almost entirely at one site
    dominant = []
    for k in range(6):
        counts = [int(np.sum(data.labels[p] == k)) for p in parts]
        dominant.append(max(counts) / sum(counts))
    assert np.mean(dominant) > 0.8
    iid = partition(data, 3, "iid", seed=0)
    iid_dom = [max(int(np.sum(data.labels[p] == k)) for p in iid) / 100 for k in range(6)]
    assert np.mean(iid_dom) < 0.5


def test_source_partition_keeps_each_modality_at_one_site():
    data = make_set()
    parts = partition(data, 2, "source", seed=0)
    assert [set(data.domains[p].tolist()) for p in parts] in ([{"CT"}, {"MRI"}], [{"MRI"}, {"CT"}])


def test_bad_schemes_are_refused():
    for bad in ["random", "dirichlet:-1", "dirichlet:x", "iid:3"]:
        with pytest.raises(ValueError, match="partition must be"):
            parse_scheme(bad)
    with pytest.raises(ValueError, match="cannot split"):
        partition(make_set(n=2), 3, "iid")


def test_holdout_takes_contiguous_slabs_with_a_gap():
    data = make_set(n=200, groups=2)
    train, held = holdout_split(data, 0.2, seed=3, gap=1)
    assert not set(train) & set(held)
    for g in ("vol0", "vol1"):
        hp = np.sort(data.positions[held][data.groups[held] == g])
        tp = data.positions[train][data.groups[train] == g]
        assert len(hp) == 20 and np.all(np.diff(hp) == 1)  # one contiguous slab
        # no training slice touches the slab: the gap keeps neighbours apart
        assert np.min(np.abs(tp[:, None] - hp[None, :])) >= 2


def test_holdout_without_positions_holds_out_whole_groups():
    data = make_set(n=100, groups=10)
    data.positions = None
    train, held = holdout_split(data, 0.2, seed=0)
    assert not set(data.groups[train]) & set(data.groups[held])
    assert len(set(data.groups[held])) == 2
