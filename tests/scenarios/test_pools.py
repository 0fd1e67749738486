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
