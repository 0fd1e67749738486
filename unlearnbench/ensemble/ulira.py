"""U-LiRA: a per-example likelihood-ratio attack after unlearning (PROTOCOL §8.7.3, register #62-63).

The split design of [DU] ``pipeline/lira/`` scored with the Gaussian test of [LiRA]. K halves H_k of
D_pool = D_train, M forget sets D_f^{k,m} ⊂ H_k per half, and one run θ^A_{k,m} of method A per (k, m).
For x ∈ D_pool, IN(x) holds φ(θ^A_{k,m}; x) of the runs that forgot x (x ∈ D_f^{k,m}) and OUT(x) those of
the runs whose half never held x (x ∉ H_k): the same method's runs [DU].

Cross-fitted [OURS]: each target half k* is scored with Gaussians fitted on the other halves only, so no
target model is part of its own fit. [DU] instead fits on the scored cases themselves, on 0/1 correctness
(σ = 0, hence NaN, whenever a group is unanimous) and only on forgotten cases (no negatives, no ROC); none
of that is ported (register #62).

Every target θ^A_{k*,m} scores each x ∈ D_f^{k*,m} (label 1) and each x ∉ H_{k*} (label 0) with
Λ = log 𝒩(φ; μ_in, σ_in²) − log 𝒩(φ; μ_out, σ_out²), μ the median and σ the standard deviation
(``np.std``) of the group, as [LiRA]. The pooled (Λ, label) give the AUC, |AUC − 0.5|, the TPR at 1% FPR
(and 0.1% with at least 10⁴ negatives) and [LiRA]'s balanced accuracy; per-example AUCs are kept for the
vulnerability distribution [U-LiRA-P].
"""
from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

SIGMA_FLOOR = 1e-12  # only where a group is constant over every example too: keeps Λ finite (ranks are kept)
LOW_FPR = (0.01, 0.001)  # the reported operating points [LiRA]
MIN_NEG_FOR_0_1PCT = 10_000  # TPR at 0.1% FPR is reported only with this many negatives (PROTOCOL §8.7.3)

Variance = Literal["per_example", "fixed"]


def _log_normal(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return -0.5 * np.log(2 * np.pi * sigma ** 2) - (x - mu) ** 2 / (2 * sigma ** 2)


def _fit(phi: np.ndarray, member: np.ndarray, variance: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(μ, σ, count) per example of the entries of ``phi`` (R, n) where ``member`` (R, n) is True."""
    vals = np.where(member, phi, np.nan)
    count = member.sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: no IN (or OUT) run for that x
        mu = np.nanmedian(vals, axis=0)  # [LiRA] takes the median for the mean
        sigma = np.nanstd(vals, axis=0)
    pooled = float(np.std(phi[member])) if member.any() else 0.0  # [LiRA] plot.py: np.std(dat_in), every example
    if variance == "fixed":
        sigma = np.full_like(mu, pooled)
    else:
        sigma = np.where(sigma > 0, sigma, pooled)  # a constant group: its pooled σ [OURS]
    return mu, np.maximum(sigma, SIGMA_FLOOR), count


def roc_stats(scores, labels) -> dict:
    """AUC (ties count half), TPR at the low FPRs (the largest TPR with FPR strictly below, [LiRA]'s
    ``tpr[np.where(fpr < x)[0][-1]]``) and the balanced accuracy max(1 − (FPR + FNR)/2)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    out: dict = {"n_pos": n_pos, "n_neg": n_neg}
    if n_pos == 0 or n_neg == 0:
        return {**out, "auc": None, "auc_dev": None, "balanced_accuracy": None,
                **{f"tpr_at_{f:g}_fpr": None for f in LOW_FPR}}
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]  # the last index of each distinct score
    tp = np.cumsum(y_sorted)[last]
    fp = np.cumsum(~y_sorted)[last]
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    auc = float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))
    out.update({"auc": auc, "auc_dev": abs(auc - 0.5), "balanced_accuracy": float(np.max(1 - (fpr + (1 - tpr)) / 2))})
    for f in LOW_FPR:
        if f == 0.001 and n_neg < MIN_NEG_FOR_0_1PCT:
            out[f"tpr_at_{f:g}_fpr"] = None
        else:
            out[f"tpr_at_{f:g}_fpr"] = float(tpr[np.flatnonzero(fpr < f)[-1]])
    return out


def _auc_pairs(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(Λ_pos > Λ_neg) + ½ P(=), from sorted ``neg``."""
    neg = np.sort(neg)
    below = np.searchsorted(neg, pos, side="left")
    equal = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * equal).sum() / (len(pos) * len(neg)))


def ulira(phi, half, in_half, forget, *, variance: Variance = "per_example") -> dict:
    """U-LiRA of one method from the margins of its K·M runs over D_pool.

    :param phi: (R, n) φ of run r on every example of D_pool.
    :param half: (R,) the half k of run r (0 … K−1).
    :param in_half: (K, n) True where the example is in H_k.
    :param forget: (R, n) True where the example is in run r's forget set D_f^{k,m} (inside H_k).
    :param variance: ``per_example`` (σ per example and group) or ``fixed`` (one σ from all IN data, for
        both groups, [LiRA] plot.py ``fix_variance``).
    :returns: the pooled ROC statistics (``roc_stats``), K, M (runs per half), the mean |IN| and |OUT| per
        scored example, the number of (target, example) cases not scored for want of a fit (a group empty
        on the other halves), and ``per_example_auc`` (n,), NaN where an example lacks either label.
    """
    phi = np.asarray(phi, dtype=np.float64)
    half = np.asarray(half, dtype=np.int64)
    in_half = np.asarray(in_half, dtype=bool)
    forget = np.asarray(forget, dtype=bool)
    R, n = phi.shape
    K = in_half.shape[0]
    if half.shape != (R,) or forget.shape != (R, n) or in_half.shape != (K, n) or half.min() < 0 or half.max() >= K:
        raise ValueError(f"ulira: phi {phi.shape}, half {half.shape}, in_half {in_half.shape} and forget "
                         f"{forget.shape} do not describe R runs over n examples in K halves")
    if (forget & ~in_half[half]).any():
        raise ValueError("ulira: a forget set reaches outside its half (D_f^{k,m} ⊂ H_k)")
    if variance not in ("per_example", "fixed"):
        raise ValueError(f"ulira: variance must be 'per_example' or 'fixed', not {variance!r}")
    out_mask = ~in_half[half]  # (R, n): run r never saw x
    scores, labels, who = [], [], []
    n_in, n_out, unscored = [], [], 0
    for k in range(K):
        targets = half == k
        if not targets.any():
            continue
        fit = ~targets
        mu_i, sd_i, c_i = _fit(phi[fit], forget[fit], variance)
        mu_o, sd_o, c_o = _fit(phi[fit], out_mask[fit], variance)
        if variance == "fixed":
            sd_o = sd_i  # [LiRA] plot.py: std_out = np.std(dat_in)
        ok = (c_i > 0) & (c_o > 0)
        lam = _log_normal(phi[targets], mu_i, sd_i) - _log_normal(phi[targets], mu_o, sd_o)  # (R_k, n)
        pos, neg = forget[targets], out_mask[targets]
        unscored += int(((pos | neg) & ~ok).sum())
        for lab, m in ((True, pos & ok), (False, neg & ok)):
            r, j = np.nonzero(m)
            scores.append(lam[r, j])
            labels.append(np.full(len(j), lab))
            who.append(j)
        n_in.append(c_i[ok])
        n_out.append(c_o[ok])
    s, y, j = np.concatenate(scores), np.concatenate(labels), np.concatenate(who)
    per = np.full(n, np.nan)
    order = np.argsort(j, kind="stable")
    bounds = np.searchsorted(j[order], np.arange(n + 1))
    for x in range(n):
        sel = order[bounds[x]:bounds[x + 1]]
        ps, ng = s[sel][y[sel]], s[sel][~y[sel]]
        if len(ps) and len(ng):
            per[x] = _auc_pairs(ps, ng)
    runs_per_half = np.bincount(half, minlength=K)
    return {**roc_stats(s, y), "K": int(K), "M": int(runs_per_half.max()), "variance": variance,
            "mean_in": float(np.concatenate(n_in).mean()) if n_in else None,
            "mean_out": float(np.concatenate(n_out).mean()) if n_out else None,
            "unscored": unscored, "per_example_auc": per}
