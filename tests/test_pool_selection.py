"""The shared pool (PROTOCOL §6), λ sweeps and rules (§5), sparsity breakdown and cost (§8.5–8.6)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from unlearnbench.config import resolve
from unlearnbench.recipe import PoolGrid, Recipe
from unlearnbench.rules import ControlThreshold, OracleAvgGap, ValMatched
from unlearnbench.selection import sweep
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
    first3 = list(stages.pool_stream("tiny", 3, timings))
    assert timings["pool_trained"] == 0 and timings["pool_n"] == 3
    a = negmerge(t for _, t in first3)
    b = negmerge(t for _, t in full[:3])
    assert all(torch.equal(a[k], b[k]) for k in a)  # NegMerge on the first k of n [P T4]


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
    assert p7.members(0) == p7.members(0) and len(set(map(str, p7.members(0)))) == 8  # stored draw
    assert p7.members(0) != p7.members(1)  # drawn from the trial's pool stream


class _Task:
    from unlearnbench.scenario import Scoring

    class_wise = False
    scoring = Scoring()


def _run_sweep(rule, cfg, table, reference=None):
    lambdas = sorted(table)
    state = {}
    calls = []

    def set_lambda(lam):
        state["lam"] = lam
        calls.append(lam)

    return sweep(set_lambda, lambda names: {n: table[state["lam"]][n] for n in names}, lambdas, rule, cfg,
                 _Task(), reference, rule.reads, lambda m: frozenset({"forget"})), calls


def test_control_threshold_stops_at_first_violation():
    table = {0.0: {"acc_forget": 90, "acc_val_retain": 100}, 0.5: {"acc_forget": 60, "acc_val_retain": 97},
             1.0: {"acc_forget": 40, "acc_val_retain": 96}, 1.5: {"acc_forget": 10, "acc_val_retain": 80},
             2.0: {"acc_forget": 5, "acc_val_retain": 99}}
    cfg = ControlThreshold.Config()
    sel, calls = _run_sweep(ControlThreshold(), cfg, table)
    assert calls == [0.0, 0.5, 1.0, 1.5] and sel.evals == 4  # nothing evaluated past the violation
    assert sel.lam == 1.0 and sel.score == 40
    sel, calls = _run_sweep(ControlThreshold(), dataclasses.replace(cfg, early_stop=False), table)
    assert len(calls) == 5 and sel.lam == 2.0 and sel.grid_edge


def test_val_matched_random_and_floor():
    table = {0.0: {"acc_forget": 100, "acc_val": 90, "acc_val_retain": 90},
             0.5: {"acc_forget": 91, "acc_val": 89, "acc_val_retain": 89},
             1.0: {"acc_forget": 88, "acc_val": 88, "acc_val_retain": 84}}  # 84 < 0.95·90: infeasible
    sel, _ = _run_sweep(ValMatched(), ValMatched.Config(), table)
    assert sel.lam == 0.5 and sel.score == 2


def test_oracle_rule_minimises_avg_gap():
    ref = {"acc_retain": 100, "acc_forget": 90, "acc_test": 90, "mia": 10}
    table = {0.0: {"acc_retain": 100, "acc_forget": 100, "acc_test": 91, "mia": 0},
             1.0: {"acc_retain": 99, "acc_forget": 91, "acc_test": 90, "mia": 9},
             2.0: {"acc_retain": 80, "acc_forget": 80, "acc_test": 80, "mia": 30}}
    sel, _ = _run_sweep(OracleAvgGap(), OracleAvgGap.Config(), table, reference=ref)
    assert sel.lam == 1.0 and sel.score == pytest.approx(0.75) and sel.oracle


def test_sparsity_breakdown_cnn():
    from unlearnbench.metrics import sparsity_breakdown
    from unlearnbench.models import build_model

    m = build_model("cnn-bn", 10)
    tau = {k: torch.ones_like(p) for k, p in m.named_parameters()}
    tau["0.weight"].zero_()  # the stem conv: all zeros
    tau["9.weight"][:128] = 0  # half the rows of fc(1568 -> 256)
    out = sparsity_breakdown(tau, m)
    assert out["by_depth"]["0"]["sparsity"] == 100.0 and out["by_depth"]["9"]["sparsity"] == pytest.approx(
        100 * 128 * 1568 / (256 * 1568 + 256))
    conv = out["by_component"]["conv"]
    assert conv["layers"] == 2 and conv["sparsity"] == pytest.approx(100 * 144 / (144 + 4608))
    assert out["by_component"]["bn_affine"]["sparsity"] == 0.0


def test_vit_blocks_split_in_thirds():
    from unlearnbench.metrics import _depth_group

    assert [_depth_group(f"visual.transformer.resblocks.{i}.mlp.c_fc.weight", 12) for i in (0, 3, 4, 8, 11)] == [
        "early", "early", "middle", "late", "late"]


def test_nothing_feasible_picks_least_damage_not_a_collapse():
    """In a learning-rate search nothing may keep the val floor; a collapsed model (Acc Df ≈ Acc Dval
    ≈ chance) must not win on |Acc Df − Acc Dval| then."""
    base = {"acc_forget": 100, "acc_val": 95, "acc_val_retain": 95}
    curve = [{"acc_forget": 60, "acc_val": 80, "acc_val_retain": 80},  # damaged, but far less
             {"acc_forget": 10, "acc_val": 10, "acc_val_retain": 10}]  # collapsed: |Df - Dval| = 0
    idx, _ = ValMatched().choose(curve, ValMatched.Config(), _Task(), None, base)
    assert idx == 0
