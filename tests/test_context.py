"""``Ctx``, the door between a method and the suite (DESIGN: context): it hands out only the declared
splits, never test data, holds the selection rule to its splits, and gives out copies of θ_0."""
from __future__ import annotations

import pytest

from unlearnbench.config import resolve
from unlearnbench.errors import SplitAccessError

POOL6 = "pool.size=6"  # 6 members (draw 0 of the random subsets, §9.5), as tests/test_runs.py runs them


def make_ctx(host, store, method, over=()):
    from unlearnbench.context import Ctx
    from unlearnbench.stages import Stages

    res = resolve(host, scenario="digits-10pct", overrides=[POOL6, *over])
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    return Ctx(Stages(task, store), method, res.cfg.method, res.rule, res.cfg.selection, res.cfg.pool)


def _peeker(split):
    """A method that reaches for data it did not declare."""
    from unlearnbench import Method

    class Peeker(Method):
        name = "peeker"
        uses = frozenset({"forget"})
        selects = False

        def unlearn(self, ctx):
            return ctx.data(split)

    return Peeker()


@pytest.mark.parametrize("split", ["retain", "test", "val"])
def test_ctx_enforces_declared_splits(host, session_store, split):
    from unlearnbench.context import Ctx
    from unlearnbench.stages import Stages

    res = resolve(host, scenario="digits-10pct", overrides=[POOL6])
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    method = _peeker(split)
    ctx = Ctx(Stages(task, session_store), method, res.cfg.method, res.rule, res.cfg.selection, res.cfg.pool)
    with pytest.raises(SplitAccessError, match=split):
        method.unlearn(ctx)
    with pytest.raises(SplitAccessError):
        ctx.retrain()
    assert ctx.data("forget")[0].shape[0] == 125  # the declared split is handed out


def test_rule_cannot_read_undeclared_splits(host, session_store):
    from unlearnbench.rules import ValMatched

    class Sneaky(ValMatched):
        name = "sneaky"

        def needs(self, cfg, task):
            return ["acc_forget", "acc_test"]  # test, while declaring forget+val

    from unlearnbench.context import Ctx
    from unlearnbench.methods.negmerge import NegMerge
    from unlearnbench.stages import Stages

    res = resolve(host, scenario="digits-10pct", overrides=[POOL6])
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    ctx = Ctx(Stages(task, session_store), NegMerge(), res.cfg.method, Sneaky(), res.cfg.selection, res.cfg.pool)
    tau = {k: v * 0 for k, v in ctx.original().items() if k in ctx.param_keys()}
    with pytest.raises(SplitAccessError, match="sneaky.*test"):
        ctx.select(tau)


def test_pool_needs_forget_declared(host, session_store):
    """The pool is trained on D_f: streaming it is reading D_f."""
    from unlearnbench.methods.retrain import Retrain

    ctx = make_ctx(host, session_store, Retrain())
    with pytest.raises(SplitAccessError, match="does not declare 'forget'"):
        next(ctx.pool())
    assert ctx.touched == set()


def test_original_is_a_copy_and_touched_records_what_was_read(host, session_store):
    import torch

    ctx = make_ctx(host, session_store, _peeker("forget"))
    a = ctx.original()
    key = next(iter(a))
    a[key].add_(1.0)  # a method editing its copy in place
    assert not torch.equal(ctx.original()[key], a[key])
    assert ctx.touched == set()
    ctx.method.unlearn(ctx)
    assert ctx.touched == {"forget"}
