"""NegMerge on hand-computed tensors and PROTOCOL §4.6's conformance identities."""
from __future__ import annotations

import pytest
import torch

from unlearnbench.methods.negmerge import NegMergeReducer, negmerge

from helpers import stack


def test_toy_columns_4_6():
    """PROTOCOL §4.6 (5): the toy columns verified against [NM]."""
    taus = stack([[0.1, 0.2, 0.3], [0, 0, 0.5], [-0.2, -0.1, -0.4], [0.1, -0.1, 0.2]])
    out = negmerge(taus)["w"]
    assert out[0].item() == pytest.approx(0.2)
    assert out[1].item() == 0.0  # an exact zero anywhere kills the element
    assert out[2].item() == pytest.approx(-0.23333, abs=1e-4)
    assert out[3].item() == 0.0  # sign conflict


def test_hand_computed_two_tensors():
    t1 = {"a": torch.tensor([[1.0, -2.0], [0.5, 0.0]]), "b": torch.tensor([3.0])}
    t2 = {"a": torch.tensor([[3.0, -4.0], [-0.5, 0.0]]), "b": torch.tensor([1.0])}
    out = negmerge([t1, t2])
    assert torch.equal(out["a"], torch.tensor([[2.0, -3.0], [0.0, 0.0]]))
    assert torch.equal(out["b"], torch.tensor([2.0]))


def rand_taus(n, seed=0, zeros=True):
    g = torch.Generator().manual_seed(seed)
    taus = []
    for _ in range(n):
        t = {"w": torch.randn(50, generator=g) + 0.3, "b": torch.randn(7, generator=g),
             "frozen": torch.zeros(5)}  # a frozen parameter: in τ, identically 0 (§3)
        if zeros:
            t["w"][:3] = 0.0
        taus.append(t)
    return taus


def test_streaming_equals_batch():
    """Identity 1: feeding one vector at a time equals the batch (stacked) computation."""
    taus = rand_taus(6)
    red = NegMergeReducer()
    for t in taus:
        red.update(t)
    stream = red.result()
    for k in taus[0]:
        V = torch.stack([t[k] for t in taus])  # (n, d)
        S, C = V.sum(0), torch.sign(V).sum(0)
        batch = torch.where(C.abs() == len(taus), S / len(taus), torch.zeros(()))
        assert torch.equal(stream[k], batch)


def test_odd():
    """Identity 2: τ_NM(−τ_1..−τ_n) = −τ_NM(τ_1..τ_n)."""
    taus = rand_taus(5)
    neg = negmerge([{k: -v for k, v in t.items()} for t in taus])
    pos = negmerge(taus)
    for k in pos:
        assert torch.equal(neg[k], -pos[k])


def test_n_equals_one():
    """Identity 3: n = 1 returns τ_1 (zeros stay zeros)."""
    (t,) = rand_taus(1)
    out = negmerge([t])
    for k in t:
        assert torch.equal(out[k], t[k])


def test_frozen_parameters_stay_zero():
    out = negmerge(rand_taus(4))
    assert torch.count_nonzero(out["frozen"]) == 0


def test_prefix_is_merge_of_prefix():
    """After k members the reducer holds τ_NM of those k (the paper's dynamic mask, §4.6)."""
    taus = rand_taus(5)
    red = NegMergeReducer()
    for k, t in enumerate(taus, 1):
        red.update(t)
        assert torch.equal(red.result()["w"], negmerge(taus[:k])["w"])


def test_counter_widens_past_127():
    t = {"w": torch.ones(3)}
    red = NegMergeReducer()
    for _ in range(130):
        red.update(t)
    assert red.C["w"].dtype == torch.int16
    assert torch.equal(red.result()["w"], torch.ones(3))


def test_mismatched_keys_rejected():
    red = NegMergeReducer()
    red.update({"a": torch.ones(2)})
    with pytest.raises(KeyError):
        red.update({"a": torch.ones(2), "b": torch.ones(1)})


@pytest.mark.slow
def test_method_consumes_pool_as_a_stream():
    """NegMerge holds O(1) task vectors whatever n: count the pool's vectors alive at once."""
    import gc
    import weakref

    from unlearnbench.methods.negmerge import NegMerge
    from unlearnbench.selection import Selection

    alive = {"now": 0, "max": 0}

    def gone():
        alive["now"] -= 1

    class FakeCtx:
        cfg = None
        timings: dict = {}
        info: dict = {}

        def pool(self):
            for i in range(40):
                t = torch.full((1000,), float(i % 3) + 1.0)
                alive["now"] += 1
                alive["max"] = max(alive["max"], alive["now"])
                weakref.finalize(t, gone)
                yield {"index": i}, {"w": t}
                del t
                gc.collect()

        def select(self, tau):
            return Selection("fixed", False, 1.0, 0.0, 0, [], 0, 0.0, False)

        def pool_size(self):
            return 40

        def apply(self, tau, lam):
            return {"w": -lam * tau["w"]}

    res = NegMerge().unlearn(FakeCtx())
    assert alive["max"] <= 2, alive  # the one being merged (and at most the next)
    assert torch.allclose(res.merged["w"], torch.full((1000,), 79.0 / 40))  # (14·1 + 13·2 + 13·3) / 40


def test_sign_bounds_reducer_is_bitwise_negmerge():
    """The chunked engine's NegMerge (running min/max instead of a sign count) changes no bit."""
    from unlearnbench.methods.negmerge import SignBoundsReducer

    taus = rand_taus(7, seed=3)
    taus[2]["w"][10:20] = 0.0
    a, b = NegMergeReducer(), SignBoundsReducer()
    for t in taus:
        a.update(t)
        b.update(t)
    ra, rb = a.result(), b.result()
    assert all(torch.equal(ra[k], rb[k]) for k in ra)
