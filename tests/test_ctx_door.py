"""``Ctx`` is a narrow door: a method gets declared splits, θ_0, the recipe, seeded generators and
the selection helpers, and nothing that reaches around them (PROTOCOL §1.4); the hyperparameter
search lives in ``unlearnbench.selection`` beside the λ sweep, with one leak check for both."""
from __future__ import annotations

import dataclasses
import math

import pytest

from unlearnbench import Method, Result, SplitAccessError
from unlearnbench.config import resolve
from unlearnbench.runner import run_trial

POOL6 = "pool.size=6"


def make_ctx(host, store, method=None, rule=None, over=()):
    from unlearnbench import Ctx
    from unlearnbench.stages import Stages

    res = resolve(host, scenario="digits-10pct", overrides=[POOL6, *over])
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    ctx = Ctx(Stages(task, store), method or res.method, res.cfg.method, rule or res.rule, res.cfg.selection,
              res.cfg.pool)
    return ctx, task


REACHES = {
    "task": lambda ctx: ctx.task.tensors("test"),
    "_task": lambda ctx: ctx._task.tensors("test"),
    "_stages": lambda ctx: ctx._stages.task.tensors("test"),
    "_rule": lambda ctx: ctx._rule,
    "typo": lambda ctx: ctx.dataa("forget"),
}


class Reacher(Method):
    """Declares forget, then reaches around ctx for test data."""

    name = "reacher"
    uses = frozenset({"forget"})
    selects = False

    def __init__(self, reach):
        self.reach = reach

    def unlearn(self, ctx):
        self.reach(ctx)
        return Result(ctx.original())


@pytest.mark.parametrize("name", sorted(REACHES))
def test_a_method_reaching_around_ctx_gets_a_split_access_error(host, session_store, name):
    ctx, _ = make_ctx(host, session_store, Reacher(REACHES[name]))
    with pytest.raises(SplitAccessError, match="ctx.data\\(split\\)"):  # the message says what to use instead
        ctx.method.unlearn(ctx)
    assert ctx.data("forget")[0].shape[0] == 125  # the door itself still opens


def test_the_runner_reports_the_reach_as_a_split_access_error(host, session_store, tmp_path):
    """Through run_trial, as the CLI runs it (SplitAccessError is an UnlearnbenchError: exit 2)."""
    res = resolve(host, scenario="digits-10pct", overrides=[POOL6])
    res = dataclasses.replace(res, method=Reacher(REACHES["task"]))
    with pytest.raises(SplitAccessError, match="ctx.task"):
        run_trial(res, 0, store=session_store, runs_dir=tmp_path, data_root=None)
    assert not list(tmp_path.rglob("run.json"))


def test_protocol_probes_stay_attribute_errors(host, session_store):
    ctx, _ = make_ctx(host, session_store)
    assert not hasattr(ctx, "__deepcopy_me__")  # dunder lookups (copy, pickle) keep Python's answer
    with pytest.raises(SplitAccessError):
        hasattr(ctx, "_stages")  # but probing for internals is reaching for them


def test_rng_is_the_methods_named_order_stream(host, session_store):
    """ctx.rng(key) is bit for bit the generator the built-ins drew before it existed."""
    import torch

    from unlearnbench.seeding import torch_gen

    ctx, _ = make_ctx(host, session_store)
    for key in ("labels", "sequential", "shadow", "fisher"):
        want = torch_gen(0, "order", ctx.method.name, key)
        assert torch.equal(ctx.rng(key).get_state(), want.get_state())
    a, b = torch.randperm(50, generator=ctx.rng("a")), torch.randperm(50, generator=ctx.rng("b"))
    assert not torch.equal(a, b) and torch.equal(a, torch.randperm(50, generator=ctx.rng("a")))
    train_gen = torch_gen(0, "order", ctx.method.name)  # ctx.train's stream; ctx.rng needs a key
    with pytest.raises(TypeError):
        ctx.rng()
    assert not torch.equal(ctx.rng("labels").get_state(), train_gen.get_state())


def test_recipe_and_search_default_replace_the_task(host, session_store):
    ctx, task = make_ctx(host, session_store)
    assert ctx.recipe == task.recipe and ctx.num_classes == task.num_classes == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.recipe.batch = 1  # read-only
    assert ctx.search_by_default is task.search_baseline_lr is True  # digits selects baseline lrs (§7.3)


def sneaky_rule():
    """The default rule, asking for test while it declares forget+val."""
    from unlearnbench.rules import ValMatched

    class Sneaky(ValMatched):
        name = "sneaky"

        def needs(self, cfg, task):
            return ["acc_forget", "acc_test"]

    return Sneaky()


def test_one_leak_check_guards_the_sweep_and_the_search(host, session_store):
    ctx, _ = make_ctx(host, session_store, rule=sneaky_rule())
    built = []
    with pytest.raises(SplitAccessError, match="sneaky.*acc_test.*test"):
        ctx.search([{"lr": 0.1}], lambda c: built.append(c) or ctx.original())
    assert built == []  # refused before any setting trains
    tau = {k: v * 0 for k, v in ctx.original().items() if k in ctx.param_keys()}
    with pytest.raises(SplitAccessError, match="sneaky.*acc_test.*test"):
        ctx.select(tau)


class Closest:
    """A rule on one fake metric: the point nearest 50, feasible when within 20 of the baseline."""

    name, oracle = "closest", False

    def needs(self, cfg, task):
        return ["acc_forget"]

    def choose(self, curve, cfg, task, reference, baseline=None):
        j = min(range(len(curve)), key=lambda i: abs(curve[i]["acc_forget"] - 50))
        return j, abs(curve[j]["acc_forget"] - 50)

    def feasible(self, curve, cfg, task, baseline=None):
        return [abs(p["acc_forget"] - baseline["acc_forget"]) <= 20 for p in curve]


def fake_search(values):
    """selection.search over settings {"x": v}; v = None diverges (a NaN weight)."""
    import torch

    from unlearnbench.selection import search

    current = {"acc_forget": 60.0}  # θ_0's, the baseline

    def build(c):
        return {"w": torch.tensor([math.nan if c["x"] is None else float(c["x"])])}

    def load(state):
        current["acc_forget"] = float(state["w"][0])

    return search([{"x": v} for v in values], build, load, lambda names: {n: current[n] for n in names},
                  Closest(), None, None, None, frozenset({"forget"}), lambda m: frozenset({"forget"}))


def test_search_rejects_diverged_settings_and_records_feasibility():
    state, sel = fake_search([10.0, None, 45.0, 90.0])
    assert float(state["w"][0]) == 45.0 and sel.index == 2 and sel.params["chosen"] == {"x": 45.0}
    assert sel.curve[1] == {"x": None, "non_finite": True}  # recorded, never scored
    assert sel.params["feasible"] == [False, False, True, False] and not sel.params["none_feasible"]
    assert sel.params["baseline"] == {"acc_forget": 60.0} and sel.evals == 4
    assert math.isnan(sel.lam) and sel.score == 5.0 and not sel.grid_edge and sel.rule == "closest"
    assert fake_search([48.0, 90.0])[1].grid_edge  # the chosen setting is an end of the grid
    assert not fake_search([48.0])[1].grid_edge  # a grid of one has no edge to move past


def test_search_with_every_setting_diverged_says_so():
    from unlearnbench.errors import StoreError

    with pytest.raises(StoreError, match="every setting"):
        fake_search([None, None])


def test_a_ctx_sent_to_a_worker_carries_only_the_declared_splits(host, session_store):
    """What crosses to an executor's worker inside a build closure (Ctx.__reduce__): the method's
    splits and θ_0, bit for bit, never test data, and none of the driver's store-backed helpers."""
    import cloudpickle
    import torch

    class ForgetOnly(Method):
        name = "forget-only"
        uses = frozenset({"forget"})

    ctx, task = make_ctx(host, session_store, method=ForgetOnly())
    ctx.info["variant"] = "x"
    blob = cloudpickle.dumps(ctx)
    far = cloudpickle.loads(blob)
    x, y = far.data("forget")
    tx, ty = task.tensors("forget")
    assert torch.equal(x, tx) and torch.equal(y, ty)
    assert all(torch.equal(far.original()[k], v) for k, v in ctx.original().items())
    assert far.info == {"variant": "x"} and far.trial == ctx.trial
    assert len(blob) < task.data.x.element_size() * task.data.x.numel()  # the data set did not travel
    for reach in (lambda c: c.pool(), lambda c: c.select({}), lambda c: c.search([], None)):
        with pytest.raises(SplitAccessError, match="driver"):
            next(iter(reach(far))) if reach is not None else None
    with pytest.raises(SplitAccessError):
        far.data("retain")  # not declared: refused as on the driver
    from unlearnbench.errors import ConfigError

    detached = task.detached(["forget"])
    with pytest.raises(ConfigError, match="no split 'test'"):
        detached.tensors("test")
