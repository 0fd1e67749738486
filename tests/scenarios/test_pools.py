"""The named pools of PROTOCOL §6: their sizes, canonical order and drawn members. Growing and
reading a pool is tests/test_stages.py's, the rules tests/test_rules.py's."""
from __future__ import annotations

from unlearnbench.recipe import PoolGrid


def test_named_pools_match_protocol(host):
    from unlearnbench.scenarios.clip.pools import CLIP_POOLS

    assert {k: len(v) for k, v in CLIP_POOLS.items()} == {
        "pool1_randaug": 30, "pool2": 16, "pool3": 8, "pool4": 6, "pool5": 64, "pool6": 32, "pool7": 8,
        "ta_paper": 1}
    classifiers = [host.scenarios.get(s) for s in host.scenarios.names() if not s.startswith("clip-")]
    assert classifiers and all(len(s.pools["default"]) == 27 for s in classifiers)  # §6.3: 3 x 3 x 3
    assert len(host.scenarios.get("cifar10-10pct").pools["pool_randaug"]) == 5  # [P T D4]
    first = host.scenarios.get("cifar10-10pct").pools["default"].members()[:2]  # canonical: leftmost outermost
    assert (first[0].epochs, first[0].wd, first[0].label_smoothing) == (40, 1e-4, 0.0)
    assert (first[1].epochs, first[1].wd, first[1].label_smoothing) == (40, 1e-4, 0.05)
    p7 = CLIP_POOLS["pool7"]
    full = p7.grid()  # 36 configs, 8 drawn per trial from the trial's pool stream, kept in grid order
    assert [full.index(r) for r in p7.members(0)] == [2, 3, 24, 25, 26, 31, 34, 35]  # the draw the records used
    assert [full.index(r) for r in p7.members(1)] == [2, 6, 12, 20, 24, 26, 27, 32]
    again = PoolGrid(p7.name, p7.base, p7.columns, draw=8)  # a function of (trial, name) only
    assert again.members(0) == p7.members(0) and again.members(1) == p7.members(1)


def test_cpu_pools_translate_and_v1_trains_them_unaugmented(host):
    """PROTOCOL §6.3 v2: digits ±1 px, fmnist ±2 px, named in each member's recipe (so in its store key);
    `pool.augment=v1` is protocol 1's pool, member for member (the recipe specs v1 stored)."""
    from unlearnbench.recipe import Recipe

    for scen, aug in (("digits-10pct", "translate1"), ("digits-class", "translate1"),
                      ("fmnist-10pct", "translate2"), ("fmnist-class", "translate2")):
        pool = host.scenarios.get(scen).pools["default"]
        assert {m.augment for m in pool.members()} == {aug}, scen
        v1 = pool.as_v1().members()
        assert {m.augment for m in v1} == {"none"} and len(v1) == 27
        assert [m.spec() for m in v1] == [m.with_(augment="none").spec() for m in pool.members()]
        assert host.scenarios.get(scen).recipe.augment == "none"  # the original and Retrain keep none
    v1_first = host.scenarios.get("digits-10pct").pools["default"].as_v1().members()[0]
    assert v1_first.spec() == Recipe(epochs=20, batch=32, lr=0.01, schedule="constant", wd=1e-4).spec()
    cifar = host.scenarios.get("cifar10-10pct").pools["default"]
    assert cifar.as_v1() is cifar  # v2 changed no GPU pool


def test_random_subsets_of_a_pool():
    """PROTOCOL §9.5 v2: draw d of the distinct random size-n subsets, a function of (trial, pool, n, d)."""
    import math

    import pytest

    from unlearnbench.errors import ConfigError
    from unlearnbench.recipe import subset_indices

    draws = [subset_indices(27, 9, d, 0, "default") for d in range(3)]
    assert all(len(s) == 9 and s == sorted(s) and len(set(s)) == 9 and max(s) < 27 for s in draws)
    assert len({tuple(s) for s in draws}) == 3 and list(range(9)) not in draws  # not the prefix
    assert subset_indices(27, 9, 2, 0, "default") == draws[2]  # draw 2 alone is draw 2
    assert subset_indices(27, 9, 0, 1, "default") != draws[0]  # another trial, another pool stream
    assert subset_indices(27, 9, 0, 0, "pool7") != draws[0]  # another pool
    assert subset_indices(27, 27, 0, 0, "default") == list(range(27))  # the whole pool has one subset
    with pytest.raises(ConfigError, match="one subset only"):
        subset_indices(27, 27, 1, 0, "default")
    every = {tuple(subset_indices(4, 3, d, 0, "p")) for d in range(math.comb(4, 3))}
    assert len(every) == 4  # distinct draws cover all C(4, 3) subsets, then there are no more
    with pytest.raises(ConfigError, match="only 4 distinct subsets"):
        subset_indices(4, 3, 4, 0, "p")
