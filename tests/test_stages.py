"""The shared stages (DESIGN: stages): the pool grows and is read by its first k members, or a random
size-k subset, without retraining; what a stage refuses."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from unlearnbench.config import resolve
from unlearnbench.errors import ConfigError
from unlearnbench.recipe import PoolGrid, Recipe
from unlearnbench.stages import Stages


def tiny_task(host, epochs):
    res = resolve(host, overrides=["seeds=[0]"])
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    grid = PoolGrid("tiny", Recipe(epochs=1, batch=32, lr=0.01, schedule="constant"),
                    (("epochs", epochs), ("wd", (1e-4, 1e-5))))
    return dataclasses.replace(task, pools={"tiny": grid})


def test_growing_a_pool_trains_only_new_members(host, session_store):
    timings: dict = {}
    first = [m for m, _ in Stages(tiny_task(host, (1, 2)), session_store).pool_stream("tiny", 0, timings)]
    assert timings["pool_n"] == 4
    timings = {}
    grown = Stages(tiny_task(host, (1, 2, 3)), session_store)
    members = [m for m, _ in grown.pool_stream("tiny", 0, timings)]
    assert timings["pool_trained"] == 2 and timings["pool_n"] == 6  # only the two epochs=3 members
    assert [m["key"] for m in members[:4]] == [m["key"] for m in first]  # keyed by config, order kept


def test_first_k_members_read_without_retraining(host, session_store):
    from unlearnbench.methods.negmerge import negmerge

    stages = Stages(tiny_task(host, (1, 2, 3)), session_store)
    full = list(stages.pool_stream("tiny", 0, {}))
    timings: dict = {}
    first3 = list(stages.pool_stream("tiny", 3, timings, subset="prefix"))  # protocol 1's n-ablation
    assert timings["pool_trained"] == 0 and timings["pool_n"] == 3
    a = negmerge(t for _, t in first3)
    b = negmerge(t for _, t in full[:3])
    assert all(torch.equal(a[k], b[k]) for k in a)  # NegMerge on the first k of n [P T4]


def test_random_subsets_are_read_from_the_pool_and_recorded(host, session_store):
    """PROTOCOL §9.5 v2: pool.size=n < the pool merges draw d of the random size-n subsets; the
    record names the members, and NegMerge of the stream is NegMerge of exactly those members."""
    from unlearnbench.methods.negmerge import negmerge

    stages = Stages(tiny_task(host, (1, 2, 3)), session_store)
    full = list(stages.pool_stream("tiny", 0, {}))
    drawn = []
    for d in ("0", "1", "2"):
        info: dict = {}
        timings: dict = {}
        sub = list(stages.pool_stream("tiny", 3, timings, subset=d, info=info))
        idx = info["pool"]["members"]
        assert timings["pool_trained"] == 0 and info["pool"]["n"] == 3 and info["pool"]["of"] == 6
        assert idx == sorted(idx) and [m["index"] for m, _ in sub] == idx  # canonical order, canonical indices
        assert [m["key"] for m, _ in sub] == [full[i][0]["key"] for i in idx]
        a, b = negmerge(t for _, t in sub), negmerge(full[i][1] for i in idx)
        assert all(torch.equal(a[k], b[k]) for k in a)  # a fresh reducer per subset: no prefix trick
        drawn.append(tuple(idx))
    assert len(set(drawn)) == 3  # three distinct subsets
    assert [m["index"] for m, _ in stages.pool_stream("tiny", 3, {}, subset="1")] == list(drawn[1])  # replayable


def test_pool_size_beyond_the_pool_and_unknown_pools_are_refused_before_training(host, tmp_path):
    from unlearnbench.store import Store

    store = Store(tmp_path / "store")
    stages = Stages(tiny_task(host, (1, 2)), store)
    with pytest.raises(ConfigError, match="pool.size=5 but pool 'tiny' has 4 members"):
        next(stages.pool_stream("tiny", 5, {}))
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        stages.pool_grid("tiyn")
    assert not (tmp_path / "store" / "original").exists()  # nothing was trained on the way
