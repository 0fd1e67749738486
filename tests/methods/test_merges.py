"""Merge operators of PROTOCOL §4.2–§4.5 and the NegMerge variants of §4.7: hand-computed tensors,
streaming = batch, the PROTOCOL identities, and one digits run per method."""
from __future__ import annotations

import math

import pytest
import torch

import unlearnbench.methods.merges as merges
from unlearnbench import ConfigError
from unlearnbench.methods.merges import GreedySoup, MagMaxReducer, TiesReducer, UniformReducer, ties_trim
from unlearnbench.methods.negmerge import NegMergeReducer, negmerge

from helpers import ref_magmax, ref_negmerge, ref_ties, ref_uniform, stack


# -- helpers ----------------------------------------------------------------------------------

def with_frozen(taus, size=3):
    """Add a frozen parameter: in τ, identically 0 in every candidate (§3)."""
    return [{**t, "frozen": torch.zeros(size)} for t in taus]


def stream(reducer, taus):
    """Feed the reducer one τ at a time from a generator (fresh copies: nothing may be retained)."""
    for t in ({k: v.clone() for k, v in t.items()} for t in taus):
        reducer.update(t)
    return reducer.result()


def rand_taus(n, seed=0, quantised=False):
    """Random task vectors with exact zeros and a frozen parameter; ``quantised`` puts values on a
    coarse grid (many equal magnitudes, exact sums whatever the order)."""
    g = torch.Generator().manual_seed(seed)
    taus = []
    for _ in range(n):
        w = torch.randn(6, 9, generator=g) + 0.3
        b = torch.randn(7, generator=g)
        if quantised:
            w, b = torch.round(w * 4) / 4, torch.round(b * 4) / 4
        w[0, :3] = 0.0  # exact zeros in every candidate
        taus.append({"w": w, "b": b, "frozen": torch.zeros(5)})
    return taus


def assert_equal(a, b):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), (k, a[k], b[k])


def neg(taus):
    return [{k: -v for k, v in t.items()} for t in taus]


# -- Uniform (§4.2) ---------------------------------------------------------------------------------

def test_uniform_hand_computed():
    t1 = {"a": torch.tensor([[1.0, -2.0], [0.5, 0.0]]), "b": torch.tensor([3.0]), "frozen": torch.zeros(2)}
    t2 = {"a": torch.tensor([[3.0, -4.0], [-0.5, 0.0]]), "b": torch.tensor([1.0]), "frozen": torch.zeros(2)}
    out = stream(UniformReducer(), [t1, t2])
    assert_equal(out, {"a": torch.tensor([[2.0, -3.0], [0.0, 0.0]]), "b": torch.tensor([2.0]),
                       "frozen": torch.zeros(2)})


def test_uniform_streaming_equals_batch():
    taus = rand_taus(5)
    assert_equal(stream(UniformReducer(), taus), ref_uniform(taus))


# -- TIES (§4.4) -------------------------------------------------------------------------------------

TIES_TAUS = with_frozen([  # d = 4 + 3 + 3 = 10 (the frozen zeros count), ⌊0.2·10⌋ = 2: the 8th smallest |v|
    {"w": torch.tensor([0.5, -0.125, 0.375, 0.75]), "b": torch.tensor([-0.625, 0.25, 0.0625])},  # t = 0.5
    {"w": torch.tensor([-0.25, 0.5, 0.875, -0.75]), "b": torch.tensor([0.5, -0.0625, 0.0])},  # t = 0.5, a tie
    {"w": torch.tensor([-0.875, -0.25, 0.0, 0.0]), "b": torch.tensor([0.625, 0.0, 0.0])},  # t = 0.25
])


def test_ties_trim_hand_computed():
    trimmed = [ties_trim(t, 0.2) for t in TIES_TAUS]
    assert torch.equal(trimmed[0]["w"], torch.tensor([0.5, 0.0, 0.0, 0.75]))
    assert torch.equal(trimmed[0]["b"], torch.tensor([-0.625, 0.0, 0.0]))
    assert torch.equal(trimmed[1]["w"], torch.tensor([0.0, 0.5, 0.875, -0.75]))  # 7th and 8th smallest are
    assert torch.equal(trimmed[1]["b"], torch.tensor([0.5, 0.0, 0.0]))  # both 0.5: ties kept, 4 survive
    assert torch.equal(trimmed[2]["w"], torch.tensor([-0.875, -0.25, 0.0, 0.0]))
    assert all(torch.count_nonzero(t["frozen"]) == 0 for t in trimmed)


def test_ties_hand_computed():
    """Elect: w[3] has Σ v̂ = 0.75 − 0.75 = 0, so it takes the global majority sign (+: Σγ = +2)."""
    out = stream(TiesReducer(0.2), TIES_TAUS)
    assert_equal(out, {"w": torch.tensor([-0.875, 0.5, 0.875, 0.75]), "b": torch.tensor([0.5625, 0.0, 0.0]),
                       "frozen": torch.zeros(3)})
    assert_equal(out, ref_ties(TIES_TAUS))


def test_ties_per_tensor_hand_computed():
    """trim_scope=per_tensor: w (d=4) and b (d=3) keep ⌊0.2·d⌋ + 1 = 1 element each; w[1] elects 0,
    falls back to +, and no entry is positive there: 0."""
    out = stream(TiesReducer(0.2, "per_tensor"), TIES_TAUS)
    assert_equal(out, {"w": torch.tensor([-0.875, 0.0, 0.875, 0.75]), "b": torch.tensor([0.5625, 0.0, 0.0]),
                       "frozen": torch.zeros(3)})


@pytest.mark.parametrize("k", [0.2, 0.05, 0.37, 0.5, 0.9])
def test_ties_trim_keeps_floor_kd_plus_one(k):
    """With distinct magnitudes exactly ⌊k·d⌋ + 1 elements survive, over all d elements of P."""
    g = torch.Generator().manual_seed(3)
    tau = {"w": torch.randn(20, 13, generator=g), "b": torch.randn(17, generator=g), "frozen": torch.zeros(11)}
    d = 20 * 13 + 17 + 11
    out = ties_trim(tau, k)
    assert sum(int(torch.count_nonzero(v)) for v in out.values()) == math.floor(k * d) + 1
    per = ties_trim(tau, k, "per_tensor")
    for name, size in (("w", 260), ("b", 17)):
        assert int(torch.count_nonzero(per[name])) == math.floor(k * size) + 1
    assert int(torch.count_nonzero(per["frozen"])) == 0


@pytest.mark.parametrize("quantised", [False, True])
def test_ties_streaming_equals_batch(quantised):
    taus = rand_taus(6, seed=1, quantised=quantised)
    assert_equal(stream(TiesReducer(0.2), taus), ref_ties(taus))
    assert_equal(stream(TiesReducer(0.6), taus), ref_ties(taus, 0.6))


def test_ties_density_one_keeps_everything_and_bad_options():
    taus = rand_taus(3)
    assert_equal(ties_trim(taus[0], 1.0), taus[0])
    for bad in ({"density": 0.0}, {"density": 1.5}, {"trim_scope": "layer"}):
        with pytest.raises(ConfigError):
            TiesReducer(**bad)


# -- MagMax (§4.5) -----------------------------------------------------------------------------------

def test_magmax_hand_computed_and_ties_go_to_the_first():
    cols = [[0.5, -0.75, 0.25], [0.5, -0.5, 0.25], [-0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [0.0, -0.25, 0.0]]
    out = stream(MagMaxReducer(), with_frozen(stack(cols)))
    assert torch.equal(out["w"], torch.tensor([-0.75, 0.5, -0.5, 0.0, -0.25]))  # columns 1 and 2: first wins
    assert torch.equal(out["frozen"], torch.zeros(3))


@pytest.mark.parametrize("quantised", [False, True])
def test_magmax_streaming_equals_batch_and_is_odd(quantised):
    taus = rand_taus(6, seed=2, quantised=quantised)  # quantised: many magnitude ties, with both signs
    out = stream(MagMaxReducer(), taus)
    assert_equal(out, ref_magmax(taus))
    assert_equal(stream(MagMaxReducer(), neg(taus)), {k: -v for k, v in out.items()})


# -- Greedy (§4.3) -----------------------------------------------------------------------------------

def quad_loss(calls):
    def loss(tau):
        calls.append(tau["w"].clone())
        return float(((tau["w"] - 1.0) ** 2).sum())
    return loss


GREEDY_TAUS = [{"w": torch.tensor([2.0])}, {"w": torch.tensor([0.0])}, {"w": torch.tensor([1.5])},
               {"w": torch.tensor([3.0])}]  # losses 1, 1, 0.25, 4


def test_greedy_ascending_hand_computed():
    """Order c(0.25), a(1), b(1) (tie: canonical order), d(4). a: soup 1.75, loss 0.5625 > 0.25, rejected;
    b: soup 0.75, 0.0625, accepted; d: soup 1.5, 0.25, rejected. τ_G = 0.75, 2n − 1 evaluations."""
    calls = []
    soup = GreedySoup(quad_loss(calls), "ascending_loss")
    out = stream(soup, GREEDY_TAUS)
    assert torch.equal(out["w"], torch.tensor([0.75]))
    assert soup.losses == [1.0, 1.0, 0.25, 4.0]
    assert soup.accepted == [2, 1] and [t["index"] for t in soup.tried] == [0, 1, 3]
    assert soup.evals == len(calls) == 2 * 4 - 1
    assert [c.item() for c in calls[4:]] == [1.75, 0.75, 1.5]


def test_greedy_descending_hand_computed():
    soup = GreedySoup(quad_loss([]), "descending_loss")
    out = stream(soup, GREEDY_TAUS)
    assert soup.accepted == [3, 0, 1, 2]  # 2.5 (2.25 ≤ 4), 5/3 (0.444), 1.625 (0.390625): all accepted
    assert torch.equal(out["w"], torch.tensor([6.5]) / 4)


def test_greedy_accepts_equal_loss_and_n_one():
    soup = GreedySoup(quad_loss([]))
    out = stream(soup, [{"w": torch.tensor([1.0])}, {"w": torch.tensor([1.0])}])
    assert soup.accepted == [0, 1] and torch.equal(out["w"], torch.tensor([1.0]))  # L(A ∪ {i}) ≤ L(A)
    soup = GreedySoup(quad_loss([]))
    assert torch.equal(stream(soup, GREEDY_TAUS[:1])["w"], torch.tensor([2.0])) and soup.evals == 1


def test_greedy_needs_data_for_merge_command():
    with pytest.raises(ConfigError, match="unlearnbench run --method greedy"):
        merges.Greedy().reducer(None)
    with pytest.raises(ConfigError):
        GreedySoup(quad_loss([]), "random")


# -- NegMerge variants (§4.7) --------------------------------------------------------------------------

NM_COLS = [[0.25, 0.5, 0.75], [0.0, 0.0, 0.5], [-0.25, -0.125, -0.5], [0.125, -0.125, 0.25], [0.0, 0.0, 0.0]]


@pytest.mark.parametrize("options, expect", [
    ({}, [1.5 / 3, 0, -0.875 / 3, 0, 0]),
    ({"value": "min"}, [0.25, 0, -0.125, 0, 0]),
    ({"value": "max"}, [0.75, 0, -0.5, 0, 0]),
    ({"value": "min", "by": "value"}, [0.25, 0, -0.5, 0, 0]),  # the literal element-wise min
    ({"value": "max", "by": "value"}, [0.75, 0, -0.125, 0, 0]),
    ({"mask": "conflict"}, [0, 0.5 / 3, 0, 0.25 / 3, 0]),
    ({"mask": "all"}, [1.5 / 3, 0.5 / 3, -0.875 / 3, 0.25 / 3, 0]),
    ({"consensus_q": 2}, [1.5 / 3, 0, -0.875 / 3, 0.375 / 2, 0]),  # column 3: P = 2, mean of the positives
    ({"consensus_q": 2, "value": "min"}, [0.25, 0, -0.125, 0.125, 0]),
    ({"consensus_q": 2, "value": "max"}, [0.75, 0, -0.5, 0.25, 0]),
    ({"consensus_q": 3}, [1.5 / 3, 0, -0.875 / 3, 0, 0]),
])
def test_negmerge_options_hand_computed(options, expect):
    taus = with_frozen(stack(NM_COLS))
    out = stream(NegMergeReducer(**options), taus)
    exp = torch.tensor(expect, dtype=torch.float64).float()
    assert torch.allclose(out["w"], exp, rtol=0, atol=1e-7), out["w"]
    assert torch.equal(out["w"] == 0, exp == 0)  # exact zeros exactly where expected
    assert torch.equal(out["frozen"], torch.zeros(3))
    ref = ref_negmerge(taus, options.get("value", "avg"), options.get("by", "magnitude"),
                       options.get("mask", "consensus"), options.get("consensus_q", 0))
    assert_equal(out, ref)


OPTIONS = [dict(value=v, by=b) for v in ("avg", "min", "max") for b in ("magnitude", "value") if v != "avg" or
           b == "magnitude"] + [dict(mask="conflict"), dict(mask="all")] + [
    dict(consensus_q=q, value=v) for q in (4, 5, 6) for v in ("avg", "min", "max")]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("quantised", [False, True])
def test_negmerge_options_streaming_equals_batch(options, quantised):
    taus = rand_taus(6, seed=4, quantised=quantised)
    ref = ref_negmerge(taus, options.get("value", "avg"), options.get("by", "magnitude"),
                       options.get("mask", "consensus"), options.get("consensus_q", 0))
    assert_equal(stream(NegMergeReducer(**options), taus), ref)


def test_negmerge_plus_conflict_is_uniform():
    """Identity 4 (§4.6), exactly: the masks are complementary and both take S_j/n; `all` is Uniform."""
    taus = rand_taus(5, seed=5)
    nm, cf, un = negmerge(taus), negmerge(taus, mask="conflict"), stream(UniformReducer(), taus)
    assert_equal({k: nm[k] + cf[k] for k in nm}, un)
    assert_equal(negmerge(taus, mask="all"), un)


@pytest.mark.parametrize("value", ["avg", "min", "max"])
def test_consensus_q_n_is_negmerge_exactly(value):
    taus = rand_taus(5, seed=6)
    assert_equal(negmerge(taus, value=value, consensus_q=5), negmerge(taus, value=value))


@pytest.mark.parametrize("value", ["min", "max"])
def test_min_max_by_magnitude_are_odd(value):
    taus = rand_taus(5, seed=7)
    pos, neg_ = negmerge(taus, value=value), negmerge(neg(taus), value=value)
    assert_equal(neg_, {k: -v for k, v in pos.items()})
    lit = negmerge(taus, value=value, by="value")  # the literal reading is not odd
    assert not torch.equal(negmerge(neg(taus), value=value, by="value")["w"], -lit["w"])


@pytest.mark.parametrize("value", ["min", "max"])
def test_min_max_n_one_returns_tau(value):
    (t,) = rand_taus(1, seed=8)
    assert_equal(negmerge([t], value=value), t)


def test_partial_consensus_needs_a_strict_majority():
    taus = rand_taus(4)
    for q in (2, 5):  # q ≤ n/2, q > n
        with pytest.raises(ConfigError, match="consensus_q"):
            negmerge(taus, consensus_q=q)


def test_partial_counters_widen_past_127():
    red = NegMergeReducer(consensus_q=100, value="min")
    for _ in range(130):
        red.update({"w": torch.tensor([1.0, -2.0, 0.0])})
    assert red.P["w"].dtype == torch.int16
    assert torch.equal(red.result()["w"], torch.tensor([1.0, -2.0, 0.0]))


@pytest.mark.parametrize("bad", [dict(value="mean"), dict(by="size", value="min"), dict(mask="majority"),
                                 dict(mask="all", value="min"), dict(mask="conflict", consensus_q=3),
                                 dict(by="value"), dict(consensus_q=-1)])
def test_negmerge_bad_options(bad):
    with pytest.raises(ConfigError):
        NegMergeReducer(**bad)


# -- registration, config, the merge command -------------------------------------------------------------

@pytest.fixture
def mhost(host):
    assert "merges" in host.infos  # registered through pyproject's entry point, like a third party
    return host


def test_presets_and_options_resolve(mhost):
    from unlearnbench.config import resolve

    assert {"uniform", "greedy", "ties", "magmax", "negmerge", "negmerge-min", "negmerge-max", "conflict",
            "all"} <= set(mhost.methods.names())
    preset = resolve(mhost, method="negmerge-min").to_dict()["method"]
    option = resolve(mhost, method="negmerge", overrides=["method.value=min"]).to_dict()["method"]
    assert preset.pop("name") == "negmerge-min" and option.pop("name") == "negmerge" and preset == option
    assert resolve(mhost, method="conflict").cfg.method.mask == "conflict"
    assert resolve(mhost, method="all").cfg.method.mask == "all"
    assert resolve(mhost, method="negmerge").cfg.method.value == "avg"
    assert resolve(mhost, method="ties").cfg.method.density == 0.2
    for method, over in (("negmerge", "method.value=median"), ("conflict", "method.value=min"),
                         ("ties", "method.trim_scope=layer"), ("greedy", "method.order=random")):
        with pytest.raises(ConfigError):
            resolve(mhost, method=method, overrides=[over])
    assert mhost.methods.get("greedy").uses == frozenset({"forget", "val"})


def test_merge_command_options(mhost, tmp_path):
    from safetensors.torch import save_file

    from unlearnbench.merge import merge_files

    taus = rand_taus(3, seed=9)
    base = {k: torch.zeros_like(v) for k, v in taus[0].items()}
    save_file(base, str(tmp_path / "base.safetensors"))
    paths = []
    for i, t in enumerate(taus):
        paths.append(str(tmp_path / f"ft{i}.safetensors"))
        save_file({k: base[k] + v for k, v in t.items()}, paths[-1])
    from safetensors.torch import load_file

    for method, params, expect in (("ties", ["trim_scope=per_tensor"], stream(TiesReducer(0.2, "per_tensor"), taus)),
                                   ("negmerge-min", [], negmerge(taus, value="min")),
                                   ("magmax", [], ref_magmax(taus))):
        out = str(tmp_path / f"{method}.safetensors")
        merge_files(mhost, method, str(tmp_path / "base.safetensors"), paths, out, None, params)
        assert_equal(load_file(out), expect)
    with pytest.raises(ConfigError, match="greedy"):
        merge_files(mhost, "greedy", str(tmp_path / "base.safetensors"), paths, str(tmp_path / "g.safetensors"),
                    None, [])


# -- end to end on digits: one run per method -------------------------------------------------------------

@pytest.mark.parametrize("method", ["uniform", "ties", "magmax", "greedy", "negmerge-min", "negmerge-max",
                                    "conflict", "all"])
def test_digits_run(mhost, session_store, tmp_path, method):
    from unlearnbench.config import resolve
    from unlearnbench.runner import run_trial

    res = resolve(mhost, method=method, scenario="digits-10pct", overrides=["pool.size=3", "threads=1"])
    rec = run_trial(res, 0, store=session_store, runs_dir=tmp_path / "runs", data_root=None)
    assert rec["method"] == method and rec["config"]["method"]["name"] == method
    assert 0.0 <= rec["lambda"] <= 2.0
    assert rec["sparsity"] is not None and 0.0 <= rec["sparsity"]["u_all"] <= 100.0
    assert rec["timings"]["pool_n"] == 3
    if method == "greedy":
        g = rec["info"]["greedy"]
        assert g["evals"] == 2 * 3 - 1 and len(g["losses"]) == 3 and g["accepted"]
        assert rec["used_splits"] == "forget+val" and rec["timings"]["select_evals"] == 41 + 5
    if method == "ties":
        assert rec["sparsity"]["u_all"] >= 40.0  # each of the 3 candidates keeps about 20%: at most ~60% nonzero
