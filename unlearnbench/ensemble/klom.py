"""KLOM, the KL divergence of margins (PROTOCOL §8.7.1, register #56-58).

Per example, the binned KL divergence between N margins of unlearned models (run i from original O_i)
and N margins of oracles (Retrain models), then the P95 over a split. Lower is better; the target is the
Retrain (independent) value at the same N (R′ scored against R), never 0: two independent samples of one
distribution give a positive binned KL (the floor, PROTOCOL §8.7.1).

Where the two reference implementations disagree, what is adopted:

- direction: KL(unlearned ‖ oracle), no renormalisation of q̃ [KL26 easydub/eval.py]. ``direction=
  "oracle_unlearned"`` is [KL25] unlearning_bench/run.py ``load_klom`` (it passes the oracle as the
  parameter named ``all_unlearned_margins``) through ``scipy.stats.entropy``, which renormalises q̃;
- binning: the last bin is closed (``binning="inclusive"``, as ``np.histogram``). Both references count
  ``np.digitize`` indices 1…20 only, so a sample equal to the pooled maximum is dropped; ``binning=
  "reference"`` reproduces that bit for bit (an unlearned sample collapsed above every oracle margin then
  scores 0, a perfect score, instead of log 10⁵ = 11.51).
"""
from __future__ import annotations

from typing import Literal, Mapping

import numpy as np

CLIP = 100.0  # both references clip margins to [−100, 100] before binning
BINS = 20  # 21 equally spaced edges between the pooled min and max [KL25, KL26]
Q_FLOOR = 1e-5  # q̃_k = max(q_k, 1e-5) where p_k > 0 [KL25, KL26]: keeps log(p/q) finite
CHUNK = 1 << 22  # margins × edges compared per block: bounded memory whatever N × examples is

Direction = Literal["unlearned_oracle", "oracle_unlearned"]
Binning = Literal["inclusive", "reference"]


def _as_models_by_examples(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"klom: {name} must be (n_models, n_examples) with n_models ≥ 1, not {a.shape}")
    return a


def _counts(x: np.ndarray, edges: np.ndarray, binning: str) -> np.ndarray:
    """Histogram counts per example: x (N, n), edges (BINS + 1, n) → (BINS, n)."""
    n_models, n = x.shape
    # np.digitize(x, edges) is searchsorted(edges, x, 'right') = the number of edges ≤ x; counted here by
    # comparison, the same integer for the same edges, so binning="reference" is [KL25, KL26] bit for bit
    idx = np.empty(x.shape, dtype=np.int64)
    step = max(1, CHUNK // (n_models * (BINS + 1)))
    for s in range(0, n, step):
        idx[:, s:s + step] = (edges[None, :, s:s + step] <= x[:, None, s:s + step]).sum(axis=1)
    if binning == "inclusive":
        idx[idx == BINS + 1] = BINS  # x == the pooled max: into the closed last bin
    # indices 1…BINS are counted; 0 cannot occur (the min is an edge) and BINS + 1 is dropped (reference)
    flat = (idx + (BINS + 2) * np.arange(n)[None, :]).ravel()
    per = np.bincount(flat, minlength=(BINS + 2) * n).reshape(n, BINS + 2)
    return per[:, 1:BINS + 1].T.astype(np.float64)


def _normalise(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=0)
    # [KL25, KL26] divide by the counted total, and give all zeros when nothing was counted; inclusive
    # binning counts every sample, so there the total is N
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def klom(unlearned, oracle, *, direction: Direction = "unlearned_oracle",
         binning: Binning = "inclusive") -> np.ndarray:
    """KLOM(x) of every example: ``unlearned`` (N_u, n) and ``oracle`` (N_o, n) margins → (n,) float64.

    Steps of PROTOCOL §8.7.1: clip to [−100, 100]; 21 edges from the pooled min a to max b (b = a + 1 when
    a = b); p, q the two histograms; q̃ = max(q, 1e-5) where p > 0; Σ_{p>0} p log(p/q̃).
    ``direction="oracle_unlearned"`` swaps the roles of the samples and renormalises q̃ (scipy's
    ``entropy``), as [KL25]; it is NaN where its p is empty (binning="reference" only), as there."""
    if direction not in ("unlearned_oracle", "oracle_unlearned"):
        raise ValueError(f"klom: direction must be 'unlearned_oracle' or 'oracle_unlearned', not {direction!r}")
    if binning not in ("inclusive", "reference"):
        raise ValueError(f"klom: binning must be 'inclusive' or 'reference', not {binning!r}")
    u = np.clip(_as_models_by_examples(unlearned, "unlearned"), -CLIP, CLIP)
    o = np.clip(_as_models_by_examples(oracle, "oracle"), -CLIP, CLIP)
    if u.shape[1] != o.shape[1]:
        raise ValueError(f"klom: unlearned has {u.shape[1]} examples, oracle {o.shape[1]}")
    a = np.minimum(u.min(axis=0), o.min(axis=0))
    b = np.maximum(u.max(axis=0), o.max(axis=0))
    b = np.where(a >= b, a + 1.0, b)  # one value everywhere: one unit-wide range [KL25, KL26]
    edges = np.linspace(a, b, BINS + 1)  # (BINS + 1, n); the last edge is b exactly
    pu, po = _normalise(_counts(u, edges, binning)), _normalise(_counts(o, edges, binning))
    p, q = (pu, po) if direction == "unlearned_oracle" else (po, pu)
    q_safe = np.where(p > 0, np.maximum(q, Q_FLOOR), q)
    # The sums run per example over 1-D rows, in the references' order (numpy's pairwise sum groups terms by
    # position), so binning="reference" gives their float64 values exactly, not to the last bit but one.
    p_rows, q_rows = np.ascontiguousarray(p.T), np.ascontiguousarray(q_safe.T)  # (n, BINS)
    # scipy's own rel_entr: its log is the C library's, which can differ from numpy's vectorised one by an ulp
    from scipy.special import rel_entr
    out = np.empty(len(p_rows))
    with np.errstate(invalid="ignore", divide="ignore"):
        for j, (pj, qj) in enumerate(zip(p_rows, q_rows)):
            if direction == "unlearned_oracle":  # [KL26] binned_kl_divergence: the sum over p > 0
                m = pj > 0
                out[j] = np.sum(pj[m] * np.log(pj[m] / qj[m]))
            else:  # [KL25]: scipy.stats.entropy(pk, qk) = Σ rel_entr(pk/Σpk, qk/Σqk); NaN for an empty pk
                pk, qk = pj / np.sum(pj), qj / np.sum(qj)
                out[j] = np.sum(rel_entr(pk, qk))
    return out


def summary(values) -> dict:
    """A split's KLOM: P95 (the reported number), mean and P5, numpy's linear interpolation [KL26]."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"p95": None, "mean": None, "p5": None, "n_examples": 0}
    return {"p95": float(np.percentile(v, 95)), "mean": float(v.mean()), "p5": float(np.percentile(v, 5)),
            "n_examples": int(v.size)}


def klom_splits(unlearned, oracle, splits: Mapping[str, np.ndarray], *,
                binning: Binning = "inclusive") -> dict:
    """KLOM per split: ``splits`` maps a split name to the columns of ``unlearned`` / ``oracle`` it holds.

    Each split gets the adopted direction's summary and, as a diagnostic, the other direction's
    (register #56: always stored); N is the unlearned ensemble's size."""
    u, o = _as_models_by_examples(unlearned, "unlearned"), _as_models_by_examples(oracle, "oracle")
    out: dict = {"n_unlearned": int(u.shape[0]), "n_oracle": int(o.shape[0]), "binning": binning,
                 "direction": "unlearned_oracle", "splits": {}}
    for name, cols in splits.items():
        cols = np.asarray(cols, dtype=np.int64)
        main = klom(u[:, cols], o[:, cols], binning=binning)
        other = klom(u[:, cols], o[:, cols], direction="oracle_unlearned", binning=binning)
        out["splits"][name] = {**summary(main), "oracle_unlearned": summary(other[~np.isnan(other)])}
    return out
