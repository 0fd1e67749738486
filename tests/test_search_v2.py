"""The v2 search of the training-based baselines (PROTOCOL §7.3, §10.2 #36 and #46): (value, epoch)
chosen jointly, θ_0 as the always-feasible null point, the edge extension, the ties, the chosen recipe,
and the same choice in worker processes as here. The selection logic on tiny tensors; the baselines on
digits with a monkeypatched (one- to three-point) grid."""
from __future__ import annotations

import math

import pytest

from unlearnbench.rules import ValMatched
from unlearnbench.scenario import Scoring
from unlearnbench.selection import HALF_DECADE, BuildFailed, search


class _Task:
    class_wise = False
    scoring = Scoring()


class _ClassWise(_Task):
    class_wise = True


THETA0 = (100.0, 90.0)  # (Acc D_f, Acc D_val) of θ_0: the val floor is 0.95·90 = 85.5


def _state(f: float, v: float) -> dict:
    import torch

    return {"w": torch.tensor([f, v])}


def _search(table, task=_Task(), null=True, calls=None, values=(0.001, 0.01, 0.1)):
    """``selection.search`` with rule (c) over settings {"lr": v}: ``table(v)`` gives (Acc D_f, Acc D_val)
    after each epoch (a list of pairs), or one pair (a one-shot method). The model "holds" θ_0 first."""
    current = {"w": _state(*THETA0)["w"]}

    def build(c):
        out = table(c["lr"])
        return [_state(*p) for p in out] if isinstance(out, list) else _state(*out)

    def build_all(cands):
        if calls is not None:
            calls.append([c["lr"] for c in cands])
        return [build(c) for c in cands]

    def load(state):
        current["w"] = state["w"]

    def measure(names):
        f, v = (float(x) for x in current["w"])
        return {n: {"acc_forget": f, "acc_val": v, "acc_val_retain": v}[n] for n in names}

    cands = [{"lr": v} for v in values]
    return search(cands, build, load, measure, ValMatched(), ValMatched.Config(), task, None,
                  frozenset({"forget", "val"}), Scoring().metric_splits, build_all,
                  null={"lr": 0.0} if null else None, original=lambda: _state(*THETA0),
                  extend="lr" if null else None)


def test_the_chosen_epoch_is_returned_not_the_last():
    # class-wise: minimise Acc D_f over the feasible points; at lr 0.01 epoch 2 is best and epoch 3 breaks the floor
    table = {0.001: [(80, 90), (60, 90), (50, 89)], 0.01: [(40, 89), (5, 88), (0, 70)], 0.1: [(0, 60)] * 3}
    state, sel = _search(table.get, _ClassWise())
    assert sel.params["chosen"] == {"lr": 0.01, "epoch": 2} and sel.score == 5
    assert state["w"].tolist() == [5, 88] and sel.states[sel.index] is state
    assert [(p["lr"], p["epoch"]) for p in sel.curve] == [(0.0, 0)] + [(v, t) for v in (0.001, 0.01, 0.1)
                                                                       for t in (1, 2, 3)]
    assert sel.curve[0] == {"lr": 0.0, "epoch": 0, "acc_forget": 100.0, "acc_val": 90.0, "acc_val_retain": 90.0}
    assert sel.params["feasible"] == [True] * 6 + [False] * 4  # per curve point; θ_0 always
    assert sel.evals == 10 and not sel.params["none_feasible"] and not sel.grid_edge
    assert sel.params["extensions"] == {"above": 0, "below": 0} and not sel.params["grid_extended"]


def test_nothing_feasible_returns_theta0_never_the_least_damage():
    # every setting breaks the floor; v1's fallback would have returned the least damaged (60, 80)
    table = {0.001: [(60, 80)], 0.01: [(10, 20)], 0.1: [(10, 10)]}
    state, sel = _search(table.get)
    assert sel.params["none_feasible"] and sel.params["chosen"] == {"lr": 0.0, "epoch": 0}
    assert state["w"].tolist() == list(THETA0) and sel.index == 0
    assert sel.score == pytest.approx(10.0)  # θ_0's own score, |100 − 90|
    assert not sel.grid_edge and not sel.params["grid_extended"]
    # a diverged setting is no feasible point either: θ_0 again, not an error
    state, sel = _search(lambda v: [(math.nan, 0.0)])
    assert sel.params["none_feasible"] and state["w"].tolist() == list(THETA0)
    assert all(p.get("non_finite") for p in sel.curve[1:])


def test_a_choice_at_the_top_extends_the_grid_at_most_twice():
    calls: list = []
    _, sel = _search(lambda v: [(100 - 100 * v, 90)], _ClassWise(), calls=calls)  # always better higher
    up1, up2 = (float(f"{0.1 * HALF_DECADE ** k:.6g}") for k in (1, 2))
    assert calls == [[0.001, 0.01, 0.1], [up1], [up2]]  # the extensions go through build_all (the executor)
    assert sel.params["extended"] == [{"lr": up1}, {"lr": up2}] and sel.params["grid_extended"]
    assert sel.params["extensions"] == {"above": 2, "below": 0} and sel.params["chosen"]["lr"] == up2
    assert sel.grid_edge  # still at the top after two: recorded
    assert [p["lr"] for p in sel.curve] == [0.0, 0.001, 0.01, 0.1, up1, up2]
    # an extension that moves the choice inside the grid: one half-decade, no edge
    calls.clear()
    _, sel = _search(lambda v: [(max(0.0, 100 - 100 * v), 90 if v < 0.2 else 50)], _ClassWise(), calls=calls)
    assert calls == [[0.001, 0.01, 0.1], [up1]] and sel.params["chosen"]["lr"] == 0.1 and not sel.grid_edge


def test_a_flat_curve_extends_above_until_the_method_acts():
    """No setting changes the model (every point equals θ_0: gradient ascent at ~0 loss): θ_0 is chosen,
    and the grid grows upward (at most twice) instead of reporting a no-op that never got a working lr."""
    calls: list = []
    up1, up2 = (float(f"{0.1 * HALF_DECADE ** k:.6g}") for k in (1, 2))
    _, sel = _search(lambda v: [(100, 90)], calls=calls)  # θ_0's own metrics at every lr
    assert calls == [[0.001, 0.01, 0.1], [up1], [up2]] and sel.params["chosen"] == {"lr": 0.0, "epoch": 0}
    assert sel.grid_edge and sel.params["extensions"]["above"] == 2
    calls.clear()  # the first extension acts and wins; at the top, it extends once more (step 4), ties back
    _, sel = _search(lambda v: [(100, 90)] if v < 0.2 else [(90, 90)], calls=calls)
    assert calls == [[0.001, 0.01, 0.1], [up1], [up2]] and sel.params["chosen"]["lr"] == up1
    assert not sel.grid_edge
    calls.clear()  # a setting acted but θ_0 won on the rule's score: the grid was wide enough
    _, sel = _search(lambda v: [(100, 90)] if v < 0.1 else [(50, 10)], calls=calls)
    assert calls == [[0.001, 0.01, 0.1]] and sel.params["chosen"]["lr"] == 0.0 and not sel.grid_edge


def test_a_choice_at_the_bottom_that_changed_the_model_extends_below():
    calls: list = []
    # class-wise: lr 0.001 forgets and keeps the floor; larger lrs break it
    _, sel = _search(lambda v: [(0, 89)] if v <= 0.001 else [(0, 50)], _ClassWise(), calls=calls)
    low1, low2 = (float(f"{0.001 / HALF_DECADE ** k:.6g}") for k in (1, 2))
    assert calls == [[0.001, 0.01, 0.1], [low1], [low2]] and sel.params["extensions"]["below"] == 2
    assert sel.params["chosen"]["lr"] == low2 and sel.grid_edge  # ties: the smaller value


def test_ties_go_to_the_smaller_value_then_the_earlier_epoch():
    # |Acc D_f − Acc D_val| ties at 0 for lr 0.01 (epochs 2 and 3) and lr 0.1 (epoch 1)
    table = {0.001: [(99, 90)] * 3, 0.01: [(95, 90), (88, 88), (87, 87)], 0.1: [(86, 86), (86, 86), (60, 60)]}
    _, sel = _search(table.get)
    assert sel.params["chosen"] == {"lr": 0.01, "epoch": 2}
    # the candidates' order does not matter: the curve is ordered by (value, epoch)
    _, again = _search(table.get, values=(0.1, 0.001, 0.01))
    assert again.params["chosen"] == sel.params["chosen"] and again.curve == sel.curve


def test_a_failed_setting_is_recorded_and_never_chosen():
    def build_all(cands):
        return [BuildFailed("boom") if c["lr"] == 0.01 else [_state(50, 89)] for c in cands]

    cur = {}
    _, sel = search([{"lr": 0.001}, {"lr": 0.01}], None, lambda s: cur.update(w=s["w"]),
                    lambda names: {"acc_forget": float(cur.get("w", [100])[0]), "acc_val": 89.0,
                                   "acc_val_retain": 89.0},
                    ValMatched(), ValMatched.Config(), _ClassWise(), None, frozenset({"forget", "val"}),
                    Scoring().metric_splits, build_all, null={"lr": 0.0}, original=lambda: _state(*THETA0))
    assert {"lr": 0.01, "epoch": None, "failed": "boom"} in sel.curve and sel.params["chosen"]["lr"] == 0.001


def test_v1_search_is_the_five_given_points_last_epoch():
    _, sel = _search({0.001: [(80, 90), (70, 90)], 0.01: [(60, 89), (10, 88)], 0.1: [(0, 60)] * 2}.get,
                     _ClassWise(), null=False)
    assert sel.curve == [{"lr": 0.001, "acc_forget": 70.0, "acc_val": 90.0, "acc_val_retain": 90.0},
                         {"lr": 0.01, "acc_forget": 10.0, "acc_val": 88.0, "acc_val_retain": 88.0},
                         {"lr": 0.1, "acc_forget": 0.0, "acc_val": 60.0, "acc_val_retain": 60.0}]
    assert sel.params["chosen"] == {"lr": 0.01} and "search" not in sel.params


# -- the baselines, on digits ------------------------------------------------------------------------------

def _ctx(host, store, method, over=(), executor=None):
    from unlearnbench.config import resolve
    from unlearnbench.context import Ctx
    from unlearnbench.stages import Stages

    res = resolve(host, method=method, scenario="digits-class", overrides=["threads=1", *over])
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    return Ctx(Stages(task, store, executor=executor), res.method, res.cfg.method, res.rule, res.cfg.selection,
               res.cfg.pool)


def test_rl_forget_returns_its_chosen_epochs_weights_and_recipe(host, session_store, monkeypatch):
    import torch

    from unlearnbench.methods import _common

    monkeypatch.setattr(_common, "V2_EXPONENTS", range(0, 1))
    ctx = _ctx(host, session_store, "random-label-forget", ["method.lr=3e-4", "method.epochs=6"])
    res = ctx.method.unlearn(ctx)
    sel = res.selection
    chosen = sel.params["chosen"]
    assert [(p["lr"], p["epoch"]) for p in sel.curve] == [(0.0, 0)] + [(3e-4, t) for t in range(1, 7)]
    assert chosen["lr"] == 3e-4 and 1 <= chosen["epoch"] < 6  # Acc D_f reaches 0 before the last epoch
    again = ctx.method.build(ctx, None, lr=3e-4)  # the same run: the weights after every epoch
    assert len(again) == 6 and all(torch.equal(res.state[k], again[chosen["epoch"] - 1][k]) for k in res.state)
    assert not all(torch.equal(res.state[k], again[-1][k]) for k in res.state)
    rec = ctx.info["recipe"]
    assert (rec["lr"], rec["epochs"]) == (3e-4, chosen["epoch"])  # the chosen recipe, not the last one tried
    assert ctx.info["lr"] == 3e-4 and ctx.info["epoch"] == chosen["epoch"] and not ctx.info["none_feasible"]


def test_no_feasible_setting_returns_the_original_bit_for_bit(host, session_store, monkeypatch):
    import torch

    from unlearnbench.methods import _common

    monkeypatch.setattr(_common, "V2_EXPONENTS", range(0, 1))
    ctx = _ctx(host, session_store, "random-label-forget", ["method.lr=0.1", "method.epochs=2"])  # collapses
    res = ctx.method.unlearn(ctx)
    theta0 = ctx.original()
    assert set(res.state) == set(theta0) and all(torch.equal(res.state[k], theta0[k]) for k in theta0)
    assert res.selection.params["none_feasible"] and ctx.info["none_feasible"] and ctx.info["recipe"] is None
    assert res.selection.params["chosen"] == {"lr": 0.0, "epoch": 0}


def test_the_v2_grids_and_the_v1_option():
    from unlearnbench.methods._common import half_decade_grid, scaled_grid
    from unlearnbench.methods.boundary import BoundaryShrink
    from unlearnbench.methods.gradient_ascent import GradientAscent
    from unlearnbench.methods.relabel import SalUn

    assert half_decade_grid(1e-4, GradientAscent.alternatives) == [1e-6, 3.16228e-6, 1e-5, 3.16228e-5, 1e-4,
                                                                   3.16228e-4, 5e-4, 1e-3]
    assert half_decade_grid(1e-5, BoundaryShrink.alternatives) == [1e-7, 3.16228e-7, 1e-6, 3.16228e-6, 5e-6, 1e-5,
                                                                   3.16228e-5, 1e-4]
    assert half_decade_grid(0.013, SalUn.alternatives)[-2:] == [0.1, 0.13]
    assert half_decade_grid(1.0, (1e-3,)) == half_decade_grid(1.0)  # a named value outside the span stays out
    assert scaled_grid(1e-4) == [1e-5, 3.33333e-5, 1e-4, 3e-4, 1e-3]


def test_v1_records_keep_their_hash_under_search_grid_v1(host):
    """`-o method.search_grid=v1` is the protocol-1 search: a committed v1 record's config with it
    resolves to the record's hash (a key left out of the hash at its legacy value, as selection.strategy)."""
    import copy
    import json
    from pathlib import Path

    from unlearnbench.config import resolve

    runs = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "protocol-v1" / "runs"
    rec = next(r for r in (json.loads(p.read_text()) for p in sorted(runs.rglob("run.json")))
               if r["method"] == "gradient-ascent" and "protocol" not in r)
    cfg = copy.deepcopy(rec["config"])
    assert "search_grid" not in cfg["method"]
    # protocol 1 fills in every v1 value (search_grid=v1, selection.target=edited, also=none)
    assert resolve(host, file_layer=cfg, device_here=False, protocol=1).hash == rec["config_hash"]
    cfg["method"]["search_grid"] = "v1"  # the key given explicitly at its v1 value: the same hash
    assert resolve(host, file_layer=cfg, device_here=False, protocol=1).hash == rec["config_hash"]
    cfg["method"]["search_grid"] = "v2"  # the v2 search: a new hash
    assert resolve(host, file_layer=cfg, device_here=False, protocol=1).hash != rec["config_hash"]


@pytest.mark.slow
def test_the_same_choice_in_worker_processes(host, session_store, monkeypatch):
    """The settings train in workers (a detached ctx without val), each epoch is measured here: the
    same curve, choice and weights as local."""
    import torch

    from unlearnbench.executor import ProcessExecutor
    from unlearnbench.methods import _common

    monkeypatch.setattr(_common, "V2_EXPONENTS", range(-1, 2))  # b/√10, b, √10·b: set here, in the driver
    over = ["method.lr=1e-3", "method.epochs=3"]
    local = _ctx(host, session_store, "random-label-forget", over)
    a = local.method.unlearn(local)
    ex = ProcessExecutor(workers=2, threads=1)
    try:
        remote = _ctx(host, session_store, "random-label-forget", over, executor=ex)
        b = remote.method.unlearn(remote)
    finally:
        ex.close()
    assert a.selection.curve == b.selection.curve and a.selection.params == b.selection.params
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert local.info == remote.info


# -- the board ------------------------------------------------------------------------------------------

def test_a_none_feasible_row_is_shown_as_the_original_and_never_ranked():
    from helpers import m, rec

    from unlearnbench.report import aggregate, render_csv, render_markdown

    def searched(method, t, metrics, none_feasible, search="v2"):
        r = rec(method, t, metrics)
        r["selection"]["params"] = {"none_feasible": none_feasible, **({"search": search} if search else {})}
        return r

    recs = []
    for t, j in enumerate((0.0, 0.1, -0.1)):
        recs.append(searched("rl-forget", t, m(100, 95 + j, 95, 10), True))  # gap ≈ 0, but it is θ_0
        recs.append(searched("half", t, m(100, 95 + j, 95, 10), t == 0))  # θ_0 in one seed of three
        recs.append(searched("v1-fallback", t, m(99, 95 + j, 95, 10), True, search=None))  # a v1 record
        recs.append(searched("ft", t, m(96, 90 + j, 93, 14), False))
    rows = {r.label: r for r in aggregate(recs)["digits-10pct"]}
    assert rows["rl-forget"].selection == "val_matched: no feasible setting (= original)"
    assert rows["half"].selection == "val_matched: no feasible setting (= original) in 1 of 3 seeds"
    assert rows["rl-forget"].mark == rows["half"].mark == ""  # the lowest gap, never bold
    assert rows["v1-fallback"].selection == "val_matched" and rows["v1-fallback"].mark == "best"
    md = render_markdown("digits-10pct", list(rows.values()), [])
    order = [ln.split(" | ")[0].lstrip("| ") for ln in md.splitlines() if ln.startswith("| ") and "val_matched" in ln]
    assert order == ["v1-fallback", "ft", "half", "rl-forget"]  # below every ranked row
    assert "no feasible setting (= original)" in render_csv(list(rows.values()))
