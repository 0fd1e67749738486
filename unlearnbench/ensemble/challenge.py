"""The NeurIPS 2023 machine-unlearning challenge's forgetting quality (PROTOCOL §8.7.2, register #59-61).

Per forget example, N margins of unlearned runs (from one original O_0, run seeds r) against N margins
of oracles. Every decision rule of [NE] (single thresholds and windows on a 0.01 grid, about 1.6·10⁵
rules per example) gives an (FPR, FNR) pair and an (ε, δ = 10⁻⁵) lower bound; the example's ε is the
largest, capped at 50, and it earns 2^{−⌊2ε⌋} points below ε_max = ⌈ln(N − 1)⌉. FQ is the mean over D_f;
the score multiplies FQ by the two utility ratios, unclipped [NE main.py].

[NE] (google-deepmind/unlearning_evaluation metric.py) tiles an N × rules tensor on a GPU per example.
Here both samples are sorted once and every rule's two counts are two ``searchsorted`` calls, so memory
is O(rules + N) and nothing needs a GPU. Counts are integers and rates are formed in float64 ([NE] takes
float32 means; the two agree except at a bucket edge within float32 rounding).

Where this follows PROTOCOL §8.7.2 rather than [NE]'s code:

- the window's right edges are linspace(max_pos − 2, max_pos + 2, 400). [NE] writes the start as
  ``pos.min() + width − 2`` and the count as ``ceil((max − min)·100)``, which float rounding makes 400
  or 401 for the same data;
- an example whose every rule is discarded (only possible when no rule sees a difference, e.g. two
  identical constant samples) has ε = 0 [OURS]; [NE] stops on an assertion there.
"""
from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np

from .margin import challenge_phi

DELTA = 1e-5  # the (ε, δ) of the attack [NE] metric.py DELTA
EPSILON_CAP = 50.0  # [NE] EPSILON_CAP; also the peaky rule's ε
PER_UNIT = 100  # thresholds per unit of φ: the 0.01 grid [NE] NUM_THRESHOLDS_PER_UNIT
BUFFER = 2.0  # how far the window's edges range around the peakier sample [NE] buffer
WINDOW_EDGES = 400  # right edges, and left edges per right edge: ceil(2·BUFFER·PER_UNIT) [NE]
PEAKY_RATIO = 0.01  # min range / max range below this: ε = 50 at once [NE]
BUCKET = 0.5  # points halve every half unit of ε [NE] bucket_size


def epsilon_max(n_models: int) -> int:
    """⌈ln(N − 1)⌉: the resolution of N samples [NE] main.py (``max_epsilon``)."""
    if n_models < 3:
        raise ValueError(f"the challenge metric needs at least 3 models per sample, not {n_models}")
    return int(math.ceil(math.log(n_models - 1)))


def bucket_points(n_models: int) -> list[tuple[float, float, float]]:
    """The table (ε from, ε to, points): [0, ½) → 1, [½, 1) → ½, … up to [ε_max − ½, ε_max)."""
    top = epsilon_max(n_models)
    return [(k * BUCKET, (k + 1) * BUCKET, 2.0 ** -k) for k in range(int(round(top / BUCKET)))]


def points(eps, n_models: int) -> np.ndarray:
    """s(ε) = 2^{−⌊2ε⌋} for ε < ε_max, else 0, elementwise."""
    e = np.asarray(eps, dtype=np.float64)
    k = np.floor(np.clip(e, 0.0, None) / BUCKET)
    return np.where(e < epsilon_max(n_models), 2.0 ** -np.minimum(k, 1074), 0.0)


@functools.lru_cache(maxsize=8)
def _epsilon_table(n_pos: int, n_neg: int) -> np.ndarray:
    """ε of a rule by its (false positives, false negatives) counts, for every pair: (n_neg + 1, n_pos + 1).

    A rule's ε depends only on its two counts, so the ~1.6·10⁵ rules of an example are looked up here
    instead of each taking logs. FPR = FNR = 0 is perfect separation (ε = ∞); exactly one of them 0 is
    under-sampled, and the rule is discarded [NE] (−∞ here, so it never wins a max); otherwise
    max(0, log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR), where a log of a non-positive
    number is undefined and ignored, as ``nanmax`` does in [NE] (both undefined: discarded)."""
    fpr = (np.arange(n_neg + 1) / n_neg)[:, None]
    fnr = (np.arange(n_pos + 1) / n_pos)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.log(1.0 - DELTA - fpr) - np.log(fnr)
        b = np.log(1.0 - DELTA - fnr) - np.log(fpr)
    e = np.fmax(a, b)  # NaN only where both terms are undefined
    e = np.where(np.isnan(e), -np.inf, np.maximum(e, 0.0))
    e[0, :] = -np.inf  # FPR = 0 alone: discarded
    e[:, 0] = -np.inf  # FNR = 0 alone: discarded
    e[0, 0] = np.inf
    e.setflags(write=False)
    return e


def _best_epsilon(fp: np.ndarray, fn: np.ndarray, n_pos: int, n_neg: int) -> float | None:
    """The largest ε over rules with these counts; None when every rule is discarded."""
    best = float(_epsilon_table(n_pos, n_neg)[fp, fn].max()) if len(fp) else -math.inf
    return None if best == -math.inf else best


def _single_threshold(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(false positives, false negatives, |pos|, |neg|) of "positive iff φ ≥ t", t over the pooled
    range's 0.01 grid. ``pos`` / ``neg`` sorted."""
    lo, hi = min(pos[0], neg[0]), max(pos[-1], neg[-1])
    t = np.linspace(lo, hi, int(math.ceil((hi - lo) * PER_UNIT)))
    fn = np.searchsorted(pos, t, side="left")  # positives below t
    fp = len(neg) - np.searchsorted(neg, t, side="left")  # negatives at or above t
    return fp, fn, len(pos), len(neg)


def _window(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(false positives, false negatives, |pos|, |neg|) of "positive iff l ≤ φ ≤ r", where positive is
    relabelled as the sample with the smaller range w: r over linspace(max_pos − 2, max_pos + 2, 400),
    l over linspace(r − w − 2, r − w + 2, 400) for each r: 1.6·10⁵ rules. ``pos`` / ``neg`` sorted."""
    if pos[-1] - pos[0] >= neg[-1] - neg[0]:  # on a tie the other one, as [NE] (`pos_diff >= neg_diff`)
        pos, neg = neg, pos
    w = pos[-1] - pos[0]
    right = np.linspace(pos[-1] - BUFFER, pos[-1] + BUFFER, WINDOW_EDGES)  # (400,)
    left = np.linspace(right - w - BUFFER, right - w + BUFFER, WINDOW_EDGES, axis=1)  # (400, 400)

    def inside(s: np.ndarray) -> np.ndarray:  # how many of sorted s lie in [l, r], per rule
        return np.maximum(np.searchsorted(s, right, side="right")[:, None] - np.searchsorted(s, left, side="left"), 0)

    tp, fp = inside(pos).ravel(), inside(neg).ravel()
    return fp, len(pos) - tp, len(pos), len(neg)


def example_epsilon(unlearned, retrained) -> float:
    """ε of one forget example from its two 1-D samples (of [NE]'s bounded φ, ``margin.challenge_phi``)."""
    u = np.sort(np.asarray(unlearned, dtype=np.float64))
    v = np.sort(np.asarray(retrained, dtype=np.float64))
    du, dv = u[-1] - u[0], v[-1] - v[0]
    big = max(du, dv)
    if big > 0 and min(du, dv) / big < PEAKY_RATIO:  # both 0: NaN in [NE], and the rule does not fire
        return EPSILON_CAP
    # "positive" is the sample with the larger median; on a tie the unlearned one [NE]
    pos, neg = (v, u) if np.median(v) > np.median(u) else (u, v)
    eps = [e for e in (_best_epsilon(*_window(pos, neg)), _best_epsilon(*_single_threshold(pos, neg)))
           if e is not None]
    best = max(eps) if eps else 0.0  # [OURS]: no rule kept, so no rule tells the samples apart
    return float(min(EPSILON_CAP, best))


def epsilons(unlearned, retrained, *, bounded: bool = True) -> np.ndarray:
    """ε_j of every forget example: ``unlearned`` (N_u, n) and ``retrained`` (N_r, n) margins → (n,).
    ``bounded``: apply [NE]'s 1e-45 rule to the margins first (PROTOCOL §8.7.0), as the metric does."""
    u = np.asarray(unlearned, dtype=np.float64)
    v = np.asarray(retrained, dtype=np.float64)
    if u.ndim != 2 or v.ndim != 2 or u.shape[1] != v.shape[1]:
        raise ValueError(f"epsilons: samples must be (n_models, n_examples) with one n_examples, not {u.shape} "
                         f"and {v.shape}")
    if bounded:
        u, v = challenge_phi(u), challenge_phi(v)
    return np.array([example_epsilon(u[:, j], v[:, j]) for j in range(u.shape[1])], dtype=np.float64)


def forgetting_quality(unlearned, retrained) -> dict:
    """FQ = mean over D_f of s(ε_j), with ε_max from the unlearned ensemble's size N [NE main.py]."""
    eps = epsilons(unlearned, retrained)
    n = int(np.asarray(unlearned).shape[0])
    s = points(eps, n)
    return {"fq": float(s.mean()) if s.size else None, "n_unlearned": n, "n_retrained": int(np.asarray(retrained).shape[0]),
            "epsilon_max": epsilon_max(n), "n_examples": int(eps.size), "epsilons": eps}


def score(fq: float, ra_u: float, ra_r: float, ta_u: float, ta_r: float, *,
          utility: Literal["unclipped", "capped"] = "unclipped") -> dict:
    """Score = FQ · (RA_U / RA_R) · (TA_U / TA_R); RA, TA: Acc D_r and Acc D_test′ averaged over each
    ensemble's models (PROTOCOL §8.7.2; D_test′ is register #61). The ratios are not clipped [NE main.py];
    ``utility="capped"`` takes min(1, ratio) (register #60)."""
    if utility not in ("unclipped", "capped"):
        raise ValueError(f"score: utility must be 'unclipped' or 'capped', not {utility!r}")
    ra, ta = ra_u / ra_r, ta_u / ta_r
    if utility == "capped":
        ra, ta = min(1.0, ra), min(1.0, ta)
    return {"score": fq * ra * ta, "fq": fq, "ra_ratio": ra, "ta_ratio": ta, "utility": utility}
