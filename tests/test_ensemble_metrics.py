"""The ensemble metrics of PROTOCOL §8.7 as pure functions of per-example margins: the conformance checks
of §8.7.5 (φ identity, bucket tables, null bands, KLOM direction and binning, U-LiRA's null), each on
synthetic numpy arrays, plus the reference ports each deviation is measured against."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnbench.ensemble import challenge, klom, margin, ulira


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- φ (§8.7.0, §8.7.5 check 1) ------------------------------------------------------------------------------

def test_phi_identity():
    """z_y − LSE_{j≠y} z equals log p_y − log(1 − p_y) to 1e-9 in float64 (§8.7.5.1)."""
    z = rng().normal(0, 3, (500, 10))
    y = rng(1).integers(0, 10, 500)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    py = p[np.arange(500), y]
    np.testing.assert_allclose(margin.margins(z, y), np.log(py) - np.log1p(-py), rtol=0, atol=1e-9)


def test_phi_takes_torch_float32_and_stays_finite_where_one_minus_p_underflows():
    import torch

    z = torch.tensor([[60.0, 0.0, 0.0], [0.0, 60.0, -5.0]], dtype=torch.float32)
    phi = margin.margins(z, torch.tensor([0, 2]))
    assert phi.dtype == np.float64
    np.testing.assert_allclose(phi, [60 - math.log(2), -65 - math.log1p(math.exp(-60.0))], rtol=1e-15)


def test_challenge_phi_is_NE_bounded_statistic():
    """[NE] metric.py compute_logit_scaled_confidence (float64 softmax, + 1e-45 inside both logs), ported."""
    z = np.concatenate([rng().normal(0, 4, (300, 10)), [[200.0] + [0.0] * 9, [-200.0] + [0.0] * 9]])
    y = np.zeros(len(z), dtype=int)
    zz = z - z.max(1, keepdims=True)
    probs = np.exp(zz)
    probs /= probs.sum(1, keepdims=True)
    right = probs[np.arange(len(z)), y]
    probs[np.arange(len(z)), y] = 0
    ne = np.log(right + 1e-45) - np.log(probs.sum(1) + 1e-45)
    ours = margin.challenge_phi(margin.margins(z, y))
    np.testing.assert_allclose(ours, ne, rtol=1e-12, atol=1e-9)
    assert np.abs(ours).max() <= 103.62 and ours[-2] == pytest.approx(103.616, abs=1e-3)


# -- the challenge metric (§8.7.2, §8.7.5 checks 2-3) -----------------------------------------------------------

def test_bucket_tables():
    """14 buckets at N = 512, 10 at N = 64; the resolution table of §8.7.2; s(0.49) = 1, s(0.5) = ½,
    s(ε_max) = 0."""
    assert len(challenge.bucket_points(512)) == 14 and len(challenge.bucket_points(64)) == 10
    table = {16: (3, 2 ** -5), 32: (4, 2 ** -7), 64: (5, 2 ** -9), 128: (5, 2 ** -9), 149: (5, 2 ** -9),
             150: (6, 2 ** -11), 256: (6, 2 ** -11), 404: (6, 2 ** -11), 405: (7, 2 ** -13), 512: (7, 2 ** -13),
             1097: (7, 2 ** -13),
             # ⌈ln 55⌉ = 5: ε_max 5 starts at N = 56 (PROTOCOL's table says 57)
             55: (4, 2 ** -7), 56: (5, 2 ** -9)}
    for n, (top, smallest) in table.items():
        rows = challenge.bucket_points(n)
        assert challenge.epsilon_max(n) == top and len(rows) == 2 * top and rows[-1] == (top - 0.5, top, smallest), n
    s = challenge.points([0.0, 0.49, 0.5, 0.99, 1.0, 4.99, 5.0, 50.0], 64)
    np.testing.assert_array_equal(s, [1, 1, 0.5, 0.5, 0.25, 2 ** -9, 0, 0])


def test_a_zero_range_sample_against_a_spread_one_is_epsilon_50():
    spread = rng().normal(0, 1, 64)
    assert challenge.example_epsilon(np.full(64, 0.3), spread) == 50.0
    assert challenge.example_epsilon(spread, np.full(64, 0.3)) == 50.0
    # both constant and equal: the peaky rule's ratio is 0/0 and does not fire, and no rule sees a difference
    assert challenge.example_epsilon(np.full(64, 0.3), np.full(64, 0.3)) == 0.0
    # both constant and apart: a threshold separates them, ε = ∞ capped at 50
    assert challenge.example_epsilon(np.full(64, 0.3), np.full(64, 2.0)) == 50.0


def _ne_epsilon_materialised(u: np.ndarray, v: np.ndarray) -> float:
    """[NE] metric.py _get_epsilons for one example, ported to numpy with its N × rules tensors, and the window's
    right edges as PROTOCOL §8.7.2 states them (400 from max_pos − 2)."""
    pos, neg = (v, u) if np.median(v) > np.median(u) else (u, v)
    dp, dn = np.ptp(pos), np.ptp(neg)
    if max(dp, dn) > 0 and min(dp, dn) / max(dp, dn) < 0.01:
        return 50.0
    rates = []
    wp, wn = (neg, pos) if dp >= dn else (pos, neg)
    w = np.ptp(wp)
    right = np.linspace(wp.max() - 2, wp.max() + 2, 400)
    left = np.concatenate([np.linspace(r - w - 2, r - w + 2, 400) for r in right])
    right = np.repeat(right, 400)
    inside = lambda c: ((left[None] <= c[:, None]) & (c[:, None] <= right[None])).mean(0)  # noqa: E731
    rates.append((inside(wn), 1 - inside(wp)))  # (FPR, FNR)
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    t = np.linspace(lo, hi, int(np.ceil((hi - lo) * 100)))
    rates.append(((neg[:, None] >= t[None]).mean(0), (pos[:, None] < t[None]).mean(0)))
    fpr, fnr = np.concatenate([r[0] for r in rates]), np.concatenate([r[1] for r in rates])
    if np.any((fpr == 0) & (fnr == 0)):
        return 50.0
    keep = (fpr > 0) & (fnr > 0)
    with np.errstate(all="ignore"):
        e = np.nanmax([np.log(1 - 1e-5 - fpr[keep]) - np.log(fnr[keep]),
                       np.log(1 - 1e-5 - fnr[keep]) - np.log(fpr[keep])], axis=0)
    return float(min(50.0, max(0.0, np.nanmax(e))))


def test_sorted_counts_give_the_materialised_rule_set():
    """searchsorted over sorted samples = [NE]'s N × rules tensor, rule for rule (no tensor built)."""
    g = rng(3)
    for j in range(6):
        n = int(g.integers(5, 12))
        u = g.normal(g.normal(0, 1), g.uniform(0.3, 2), n)
        v = g.normal(0, 1, n + j % 2)  # unequal sizes too
        if j == 5:
            u = np.round(u, 1)  # ties on the grid
        assert challenge.example_epsilon(u, v) == pytest.approx(_ne_epsilon_materialised(u, v), abs=1e-12), j


def test_forgetting_quality_null_band_and_a_shift():
    """Two samples of one per-example distribution: FQ in the toy band 0.15–0.22 at N = 64 (§8.7.5.3); a 1-SD
    shift falls to the 0.02–0.09 band of §8.7.2. FQ ∈ [0, 1]."""
    g = rng(64)
    mu = g.normal(0, 3, 80)
    u, v = mu + g.normal(0, 1, (64, 80)), mu + g.normal(0, 1, (64, 80))
    null = challenge.forgetting_quality(u, v)
    assert null["epsilon_max"] == 5 and null["n_examples"] == 80
    assert 0.15 <= null["fq"] <= 0.22, null["fq"]
    shifted = challenge.forgetting_quality(u + 1.0, v)
    assert 0.02 <= shifted["fq"] <= 0.09, shifted["fq"]


def test_deterministic_runs_score_zero_and_the_score_multiplies_unclipped_ratios():
    """N identical outputs (no unlearning from one original) against spread oracles: ε = 50 on every example,
    FQ = 0 (§8.7.0); the utility ratios are unclipped unless capped (register #60)."""
    g = rng(5)
    fq = challenge.forgetting_quality(np.tile(g.normal(0, 1, 10), (16, 1)), g.normal(0, 1, (16, 10)))
    assert fq["fq"] == 0.0 and (fq["epsilons"] == 50).all()
    s = challenge.score(0.2, ra_u=99.0, ra_r=90.0, ta_u=80.0, ta_r=100.0)
    assert s["score"] == pytest.approx(0.2 * 1.1 * 0.8) and s["ra_ratio"] == pytest.approx(1.1)
    assert challenge.score(0.2, 99.0, 90.0, 80.0, 100.0, utility="capped")["score"] == pytest.approx(0.2 * 0.8)


# -- KLOM (§8.7.1, §8.7.5 checks 4-5) --------------------------------------------------------------------------

def test_klom_direction_closed_forms():
    """Known histograms: the default is KL(unlearned ‖ oracle), q̃ not renormalised [KL26];
    ``oracle_unlearned`` is [KL25]'s, renormalised. KLOM(X vs X) = 0 (§8.7.5.4)."""
    u = np.array([[0.0], [0.0], [0.0], [10.0]])  # bins: 3/4 in the first, 1/4 in the closed last
    o = np.array([[0.0], [0.0], [10.0], [10.0]])
    assert klom.klom(u, o)[0] == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-12)
    assert klom.klom(u, o, direction="oracle_unlearned")[0] == pytest.approx(0.5 * math.log(2 / 3) + 0.5 * math.log(2),
                                                                            abs=1e-12)
    # a bin the oracle never reaches: q̃ = 1e-5 there; [KL25] then renormalises q̃ by 1 + 1e-5
    u3, o3 = np.array([[0.0], [0.0], [5.0], [10.0]]), np.array([[0.0], [0.0], [10.0], [10.0]])
    assert klom.klom(u3, o3)[0] == pytest.approx(0.25 * math.log(0.25 / 1e-5) + 0.25 * math.log(0.5), abs=1e-12)
    expect = math.log(1 + 1e-5) + 0.25 * math.log(0.25 / 1e-5) + 0.25 * math.log(0.5)
    assert klom.klom(o3, u3, direction="oracle_unlearned")[0] == pytest.approx(expect, abs=1e-12)
    x = rng().normal(0, 1, (32, 50))
    np.testing.assert_array_equal(klom.klom(x, x), np.zeros(50))


def test_klom_collapsed_above_case():
    """All unlearned margins equal and above every oracle margin: 11.513 with the closed last bin, 0 with the
    references' binning, which drops the pooled maximum (§8.7.5.5, register #57)."""
    o = rng().normal(0, 1, (64, 1))
    u = np.full((64, 1), 5.0)
    assert klom.klom(u, o)[0] == pytest.approx(math.log(1e5), abs=1e-9) == pytest.approx(11.513, abs=1e-3)
    assert klom.klom(u, o, binning="reference")[0] == 0.0


def _kl26_binned(p_samples, q_samples):
    """[KL26] easydub/eval.py binned_kl_divergence, ported."""
    p_arr, q_arr = np.clip(p_samples, -100, 100), np.clip(q_samples, -100, 100)
    start, end = min(p_arr.min(), q_arr.min()), max(p_arr.max(), q_arr.max())
    if start >= end:
        end = start + 1.0
    edges = np.linspace(start, end, 21)
    pc = np.array([np.sum(np.digitize(p_arr, edges) == i) for i in range(1, 21)])
    qc = np.array([np.sum(np.digitize(q_arr, edges) == i) for i in range(1, 21)])
    pp = pc / pc.sum() if pc.sum() > 0 else np.zeros(20)
    qp = qc / qc.sum() if qc.sum() > 0 else np.zeros(20)
    qs = np.where(pp > 0, np.maximum(qp, 1e-5), qp)
    m = pp > 0
    return float(np.sum(pp[m] * np.log(pp[m] / qs[m]))), pp, qs


def test_klom_reference_binning_is_both_repos_bit_for_bit():
    """binning="reference": [KL26]'s value exactly, and [KL25]'s direction through scipy.stats.entropy."""
    from scipy import stats

    g = rng(7)
    u = np.round(g.normal(0.5, 2, (20, 40)), 1)  # ties, and samples on the pooled max
    o = np.round(g.normal(0, 2, (20, 40)), 1)
    u[:, 0], o[:, 1] = 150.0, -150.0  # clipped
    u[:, 2] = o[:, 2] = 3.0  # one value everywhere: the range becomes [a, a + 1]
    ours = klom.klom(u, o, binning="reference")
    kl25 = klom.klom(u, o, binning="reference", direction="oracle_unlearned")
    for j in range(40):
        assert ours[j] == _kl26_binned(u[:, j], o[:, j])[0], j
        _, pp, qs = _kl26_binned(o[:, j], u[:, j])  # load_klom: p = oracle, q = unlearned
        assert kl25[j] == stats.entropy(pk=pp, qk=qs), j


def test_klom_floor_of_two_independent_samples():
    """The floor is not 0: the Gaussian toy of §8.7.1 at N = 64 (400 repeats) has mean ≈ 0.60, P95 ≈ 1.20."""
    g = rng(11)
    s = klom.summary(klom.klom(g.normal(0, 1, (64, 400)), g.normal(0, 1, (64, 400))))
    assert 0.5 <= s["mean"] <= 0.7 and 1.0 <= s["p95"] <= 1.4, s
    per = klom.klom_splits(g.normal(0, 1, (64, 30)), g.normal(0, 1, (64, 30)), {"forget": np.arange(10),
                                                                               "retain": np.arange(10, 30)})
    assert per["splits"]["forget"]["n_examples"] == 10 and set(per["splits"]["retain"]["oracle_unlearned"]) >= {"p95"}


# -- U-LiRA (§8.7.3, §8.7.5 check 7) ----------------------------------------------------------------------------

def _lira_design(K: int, M: int, n: int, seed: int, shift: float):
    """K random halves of n examples, M forget sets of 10% per half; φ = a per-example level + noise, plus
    ``shift`` on the examples a run forgot (0: IN and OUT from one distribution)."""
    g = rng(seed)
    in_half = np.zeros((K, n), dtype=bool)
    for k in range(K):
        in_half[k, g.permutation(n)[: n // 2]] = True
    half = np.repeat(np.arange(K), M)
    forget = np.zeros((K * M, n), dtype=bool)
    for r, k in enumerate(half):
        members = np.flatnonzero(in_half[k])
        forget[r, g.choice(members, size=len(members) // 10, replace=False)] = True
    level = g.normal(0, 2, n)
    phi = level[None] + g.normal(0, 1, (K * M, n)) + shift * forget
    return phi, half, in_half, forget


def test_ulira_null():
    """IN and OUT from one distribution: AUC = 0.5 ± 3 standard errors, TPR@1%FPR in the binomial band
    around 1% (§8.7.5.7). Cross-fitting is what makes this hold: an in-sample fit would pull each IN
    median towards the scored value itself."""
    out = ulira.ulira(*_lira_design(16, 10, 400, seed=0, shift=0.0))
    n_pos, n_neg = out["n_pos"], out["n_neg"]
    # an example no run of the other halves forgot has no IN fit for that target half: left out, and counted
    assert n_pos + n_neg + out["unscored"] == 16 * 10 * (20 + 200) and out["unscored"] < 0.01 * (n_pos + n_neg)
    se = math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))
    assert abs(out["auc"] - 0.5) <= 3 * se, (out["auc"], se)
    band = 3 * math.sqrt(0.01 * 0.99 / n_pos)
    assert 0.01 - band <= out["tpr_at_0.01_fpr"] <= 0.01 + band, out["tpr_at_0.01_fpr"]
    assert out["tpr_at_0.001_fpr"] is not None  # 32,000 negatives ≥ 10⁴
    assert out["mean_in"] == pytest.approx(15 * 10 * 0.1 / 2, rel=0.1) and out["mean_out"] == pytest.approx(75, rel=0.1)


def test_ulira_sees_under_and_over_forgetting():
    """Forgotten examples kept above never-seen ones (under-forgetting) or pushed below them (over-forgetting)
    both give AUC > 0.5: IN is fitted on the method's own runs, so the test learns the direction of a consistent
    shift. ``variance=fixed`` sees it as well."""
    under = ulira.ulira(*_lira_design(16, 10, 200, seed=1, shift=1.5))
    over = ulira.ulira(*_lira_design(16, 10, 200, seed=1, shift=-1.5))
    fixed = ulira.ulira(*_lira_design(16, 10, 200, seed=1, shift=1.5), variance="fixed")
    assert under["auc"] > 0.75 and over["auc"] > 0.75 and over["auc_dev"] > 0.25 and fixed["auc"] > 0.6
    assert under["tpr_at_0.01_fpr"] > 0.05
    per = under["per_example_auc"]
    assert per.shape == (200,) and np.nanmean(per) > 0.75
    few = ulira.ulira(*_lira_design(4, 5, 200, seed=1, shift=1.5))
    assert few["tpr_at_0.001_fpr"] is None and few["n_neg"] < 10_000  # 0.1% FPR needs ≥ 10⁴ negatives


def test_roc_stats_match_sklearn():
    from sklearn.metrics import roc_auc_score, roc_curve

    g = rng(2)
    y = g.random(3000) < 0.3
    s = np.round(g.normal(0, 1, 3000) + 0.4 * y, 1)  # ties
    out = ulira.roc_stats(s, y)
    assert out["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    assert out["tpr_at_0.01_fpr"] == tpr[np.where(fpr < 0.01)[0][-1]]  # [LiRA] plot.py's convention
    assert out["balanced_accuracy"] == pytest.approx(np.max(1 - (fpr + (1 - tpr)) / 2))


def test_ulira_refuses_a_forget_set_outside_its_half():
    phi, half, in_half, forget = _lira_design(4, 2, 40, seed=0, shift=0.0)
    forget[0, np.flatnonzero(~in_half[0])[0]] = True
    with pytest.raises(ValueError, match="outside its half"):
        ulira.ulira(phi, half, in_half, forget)
