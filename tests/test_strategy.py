"""λ-search strategies (``selection.strategy``, issue 15): ``frontier`` and ``halving`` evaluate part
of the grid and choose the full grid's λ* on well-behaved curves; ``grid`` is today's sweep; a rule
may opt out; the legacy value leaves the config hash as it was."""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from unlearnbench.errors import ConfigError
from unlearnbench.rules import ControlThreshold, ValMatched
from unlearnbench.scenario import Scoring
from unlearnbench.selection import STRATEGIES, SelectionRule, grid, sweep

ROOT = Path(__file__).resolve().parent.parent
GRID = grid("classifier")  # 41 points
# These curves were written for v1's target (the edited model's Acc D_val, no grid extension); what
# they test, each strategy's agreement with the full grid, is the same under v2 (test_v2_extension_*)
V1 = ValMatched.Config(target="edited")


class _Task:
    def __init__(self, class_wise=False):
        self.class_wise = class_wise
        self.scoring = Scoring()
        self.grids = None


def _run(rule, cfg, table, strategy, lambdas=GRID, class_wise=False):
    """sweep with ``table`` (λ -> metrics) as the model; returns the Selection and the λs set."""
    state, calls = {}, []

    def set_lambda(lam):
        state["lam"] = lam
        calls.append(lam)

    sel = sweep(set_lambda, lambda names: {n: table[state["lam"]][n] for n in names}, list(lambdas), rule, cfg,
                _Task(class_wise), None, rule.reads, Scoring().metric_splits, strategy=strategy)
    return sel, calls


def _same_choice(rule, cfg, table, class_wise=False, lambdas=GRID):
    """Every strategy against grid: the same λ*, score and grid_edge; returns the Selections."""
    full, _ = _run(rule, cfg, table, "grid", lambdas, class_wise)
    out = {"grid": full}
    for strategy in STRATEGIES[1:]:
        sel, calls = _run(rule, cfg, table, strategy, lambdas, class_wise)
        assert (sel.lam, sel.score, sel.grid_edge) == (full.lam, full.score, full.grid_edge), strategy
        assert [c["lambda"] for c in sel.curve] == sorted(set(calls) - ({0.0} if lambdas[0] != 0 else set()))
        assert sel.evals == len(calls) and len(set(calls)) == len(calls)  # each λ once
        assert sel.params["strategy"] == strategy
        out[strategy] = sel
    return out


def _random_table(forget, val, floor):
    return {lam: {"acc_forget": f, "acc_val": v, "acc_val_retain": r}
            for lam, f, v, r in zip(GRID, forget, val, floor)}


def _crossing():
    # Acc D_f falls 0.45 per step from 100 and meets Acc D_val = 92 between λ = 0.85 and 0.9
    # (|gap| 0.35 and 0.1); the floor never binds
    return _random_table([100 - 0.45 * i for i in range(41)], [92.0] * 41, [92.0] * 41)


def test_val_matched_random_interior_crossing():
    sels = _same_choice(ValMatched(), V1, _crossing())
    assert sels["grid"].lam == 0.9 and sels["grid"].evals == 41
    assert sels["frontier"].evals == 41  # nothing infeasible: frontier is the grid here
    assert sels["halving"].evals <= 14  # the point of it


def test_val_matched_random_floor_hit():
    # |Acc D_f - Acc D_val| still shrinking when the floor binds: λ* is the last feasible λ (0.9)
    forget = [100 - 0.5 * i for i in range(41)]
    val = [92 - 0.1 * i for i in range(41)]
    floor = [92 - 0.25 * i for i in range(41)]  # >= 0.95 x 92 = 87.4 up to i = 18 (λ = 0.9)
    sels = _same_choice(ValMatched(), V1, _random_table(forget, val, floor))
    assert sels["grid"].lam == 0.9 and not sels["grid"].grid_edge
    assert sels["frontier"].evals == 20  # λ = 0 ... 0.95, the first infeasible one, and no further
    assert sels["halving"].evals < 20
    # the coarse pass's first infeasible λ (1.2, every 8th point) is the last one it evaluates
    assert max(c["lambda"] for c in sels["halving"].curve) == 1.2


@pytest.mark.parametrize("floor_from", [None, 12])
def test_val_matched_class_wise_plateau_and_floor(floor_from):
    # Acc D_f falls to 0 at λ = 1.0 and stays: ties go to the smaller λ, so λ* = 1.0 (or the floor's)
    forget = [max(0.0, 100 - 5 * i) for i in range(41)]
    val = [90.0] * 41
    floor = [90.0 if floor_from is None or i < floor_from else 80.0 for i in range(41)]
    sels = _same_choice(ValMatched(), V1, _random_table(forget, val, floor), class_wise=True)
    assert sels["grid"].lam == (1.0 if floor_from is None else 0.55)
    assert sels["halving"].evals < 41


def test_control_threshold_interior_boundary():
    # the control accuracy falls below 0.95 x 100 at λ = 1.3; forget accuracy keeps falling
    table = {lam: {"acc_forget": 100 - 3 * i, "acc_val_retain": 100 - 0.2 * i} for i, lam in enumerate(GRID)}
    rule, cfg = ControlThreshold(), ControlThreshold.Config()
    sels = _same_choice(rule, cfg, table)
    assert sels["grid"].lam == 1.25 and sels["grid"].evals == 27  # grid's own early stop
    assert sels["halving"].evals < 27
    sels = _same_choice(rule, dataclasses.replace(cfg, early_stop=False), table)
    assert sels["grid"].evals == 41 and sels["grid"].lam == 1.25


@pytest.mark.parametrize("edge", ["first", "last"])
def test_grid_edges(edge):
    # score rising from λ = 0 (λ* = 0), or falling over the whole feasible grid (λ* = 2.0, grid_edge)
    if edge == "first":
        forget = [95 + 0.1 * i for i in range(41)]
    else:
        forget = [100 - 0.1 * i for i in range(41)]
    val = [90.0] * 41
    sels = _same_choice(ValMatched(), V1, _random_table(forget, val, val))
    assert sels["grid"].lam == (0.0 if edge == "first" else 2.0)
    assert sels["halving"].grid_edge == (edge == "last") and sels["halving"].evals < 41


def test_grid_not_starting_at_0_keeps_theta0_as_baseline():
    lambdas = grid("1:2:0.05")
    table = {0.0: {"acc_forget": 100, "acc_val": 90, "acc_val_retain": 100}}
    for i, lam in enumerate(lambdas):  # feasible while 99 - i >= 95, i.e. up to λ = 1.2
        table[lam] = {"acc_forget": 100 - 2 * i, "acc_val": 90, "acc_val_retain": 99 - i}
    sels = _same_choice(ValMatched(), V1, table, lambdas=lambdas)
    assert sels["grid"].lam == 1.2
    for sel in sels.values():  # θ_0 measured once, first, and recorded
        assert sel.params["baseline"]["lambda"] == 0.0 and sel.curve[0]["lambda"] == 1.0


def test_well_behaved_random_curves_all_agree():
    """The construction's claim on 300 random curves of the assumed shape: a feasible prefix, and a
    score that falls strictly to its first minimiser and never goes below it after (plateaus there)."""
    rng = random.Random(15)
    for _ in range(300):
        m = rng.randrange(41)
        down = sorted(rng.sample(range(1, 1000), 41), reverse=True)
        score = [down[i] / 10 for i in range(m)] + [down[m] / 10] * 1
        while len(score) < 41:
            score.append(score[-1] + rng.choice([0.0, 0.0, 0.1, 0.5, 2.0]))
        b = rng.randrange(1, 42)  # feasible: indices < b (λ = 0 always)
        table = {lam: {"acc_forget": 50 + score[i], "acc_val": 50.0, "acc_val_retain": 100.0 if i < b else 10.0}
                 for i, lam in enumerate(GRID)}
        class_wise = rng.random() < 0.5
        if class_wise:
            for i, lam in enumerate(GRID):
                table[lam]["acc_forget"] = score[i]
        sels = _same_choice(ValMatched(), V1, table, class_wise=class_wise)
        assert sels["halving"].evals <= 16


def test_a_noisy_curve_can_fool_halving_not_frontier():
    # an isolated dip between coarse points: halving is an option, not the default, for this reason
    score = [5.0] * 41
    score[13] = 0.5
    table = _random_table([90 + s for s in score], [90.0] * 41, [90.0] * 41)
    full, _ = _run(ValMatched(), V1, table, "grid")
    front, _ = _run(ValMatched(), V1, table, "frontier")
    half, _ = _run(ValMatched(), V1, table, "halving")
    assert full.lam == front.lam == 0.65 and half.lam != 0.65


def test_a_rule_that_opts_out_gets_the_full_grid():
    class Whole(ValMatched):
        name = "whole"
        grid_only = True

    for strategy in STRATEGIES:
        sel, calls = _run(Whole(), V1, _crossing(), strategy)
        assert calls == GRID and sel.evals == 41 and sel.lam == 0.9
        assert sel.params == ({} if strategy == "grid" else {"strategy": "grid"})


def test_a_third_party_rule_works_through_feasible_and_choose():
    class MaxVal(SelectionRule):
        """Largest Acc D_val while Acc D_f <= 50: written without a baseline argument anywhere."""

        name = "max_val"
        reads = frozenset({"forget", "val"})

        def needs(self, cfg, task):
            return ["acc_forget", "acc_val"]

        def feasible(self, curve, cfg, task):
            return [True] * len(curve)

        def choose(self, curve, cfg, task, reference, baseline=None):
            ok = [c for c in curve if c["acc_forget"] <= 50] or curve
            best = max(ok, key=lambda c: (c["acc_val"], -c["lambda"]))
            return curve.index(best), -best["acc_val"]

    # Acc D_val peaks at λ = 0.7 (i = 14); Acc D_f <= 50 from λ = 0.5
    table = {lam: {"acc_forget": 100 - 5 * i, "acc_val": 90 - abs(i - 14)} for i, lam in enumerate(GRID)}
    sels = _same_choice(MaxVal(), None, table)
    assert sels["grid"].lam == 0.7 and sels["halving"].evals < 41


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="selection.strategy must be one of grid, frontier, halving"):
        _run(ValMatched(), V1, {}, "fast")


# -- config: the option and the hash ----------------------------------------------------------

def test_the_strategy_option_and_the_legacy_hash(host):
    from unlearnbench.config import resolve

    v1 = {"scenario": "digits-10pct", "protocol": 1}  # the default of then: digits-10pct, protocol 1's keys
    default = resolve(host, **v1)
    assert str(default.cfg.selection.strategy) == "grid" and default.variant == []
    # the default configuration's hash from before selection.strategy existed (digits-10pct, negmerge)
    assert default.hash == "269e20c00b4bb843abcd3825c4dab061ac6ca3c5cceda82d93d90f778e23df29"
    assert resolve(host, overrides=["selection.strategy=grid"], **v1).hash == default.hash
    fast = resolve(host, overrides=["selection.strategy=halving"], **v1)
    assert fast.hash != default.hash and fast.variant == ["selection.strategy=halving"]
    assert resolve(host, overrides=["selection.strategy=frontier"], **v1).hash not in (default.hash, fast.hash)
    with pytest.raises(ConfigError, match="selection.strategy"):
        resolve(host, overrides=["selection.strategy=fast"])


def test_committed_records_without_the_key_keep_their_hashes(host):
    from unlearnbench.config import resolve

    paths = sorted((ROOT / "benchmarks" / "results" / "protocol-v1" / "runs").glob("*/*/seed-0/run.json"))
    assert len(paths) > 50
    for p in paths:
        rec = json.loads(p.read_text())
        assert "strategy" not in rec["config"]["selection"]
        res = resolve(host, file_layer=rec["config"], device_here=False, protocol=rec.get("protocol", 1))
        assert str(res.cfg.selection.strategy) == "grid"  # read as the legacy value
        assert res.hash == rec["config_hash"], p


def test_ctx_select_uses_the_configured_strategy(host, session_store):
    """Through ctx.select on the real model: halving's points are the grid's, bit for bit, and fewer."""
    from unlearnbench.context import Ctx
    from unlearnbench.config import resolve
    from unlearnbench.stages import Stages

    sels = {}
    for strategy in ("grid", "halving"):
        res = resolve(host, overrides=["pool.size=6", f"selection.strategy={strategy}"])
        task = res.scenario.build_task(res.cfg.scenario, 0, None)
        ctx = Ctx(Stages(task, session_store), res.method, res.cfg.method, res.rule, res.cfg.selection, res.cfg.pool)
        theta0 = ctx.original()
        names = {n for n, _ in ctx.new_model(theta0).named_parameters()}
        tau = {k: 0.5 * v for k, v in theta0.items() if k in names}  # shrinks the weights as λ grows
        sels[strategy] = ctx.select(tau)
    full, half = sels["grid"], sels["halving"]
    assert full.evals == 41 and half.evals < 41 and half.params["strategy"] == "halving"
    by_lam = {c["lambda"]: c for c in full.curve}
    assert all(by_lam[c["lambda"]] == c for c in half.curve)  # a λ's metrics do not depend on the order


def test_v2_extension_every_strategy_agrees():
    """v2 val_matched: Acc D_f still falls at λ = 2, so every strategy extends the grid to 4.0 and
    lands on the same λ* as the full grid's extension (the target is θ_0's Acc D_val, 92)."""
    lambdas = grid("0:4:0.05")
    table = {lam: {"acc_forget": 100 - 0.1 * i, "acc_val": 92.0 - 0.01 * i, "acc_val_retain": 92.0}
             for i, lam in enumerate(lambdas)}  # on [0, 2] |Acc D_f − 92| falls to 4 at λ = 2: extend
    table.update({lam: {"acc_forget": 92 + 0.01 * (i - 60) ** 2, "acc_val": 90.0, "acc_val_retain": 92.0}
                  for i, lam in enumerate(lambdas) if i > 40})  # past 2: a bowl with its bottom (92) at λ = 3
    sels = {st: _run(ValMatched(), ValMatched.Config(), table, st)[0] for st in STRATEGIES}
    assert sels["grid"].params["grid_extended"] and sels["grid"].lam == 3.0 and not sels["grid"].grid_edge
    for st, sel in sels.items():
        assert (sel.lam, sel.score) == (sels["grid"].lam, sels["grid"].score), st
