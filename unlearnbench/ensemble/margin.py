"""φ, the one per-example statistic of the ensemble metrics (PROTOCOL §8.7.0).

φ(θ; x, y) = z_y − log Σ_{j≠y} exp(z_j) = log p_y − log(1 − p_y): the KLOM "margin" [KL25, KL26] and,
identically, the "logit-scaled confidence" of LiRA and the challenge metric [LiRA, NE]. It is computed
in float64 from eval-mode logits, in the log-sum-exp form: the right-hand form loses every digit once
1 − p_y rounds to 0 (|φ| ≳ 37 in float64), the left-hand one never does.

Each metric then bounds φ its own way, as its reference does: the challenge metric adds 1e-45 inside both
logs (|φ| ≤ 103.6, ``challenge_phi``), KLOM clips to [−100, 100] (``klom.CLIP``). What is cached is the
unbounded margin, so either rule (or a corrected one) is a pure function of the cache.
"""
from __future__ import annotations

import numpy as np

# [NE] metric.py compute_logit_scaled_confidence: log(p_correct + 1e-45) − log(p_wrong + 1e-45)
NE_TINY = 1e-45


def margins(logits, labels) -> np.ndarray:
    """φ of every row: ``logits`` (n, C) (numpy or torch, any float dtype), ``labels`` (n,) → (n,) float64."""
    z = np.asarray(logits.detach().cpu().numpy() if hasattr(logits, "detach") else logits, dtype=np.float64)
    y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"margins: logits must be (n, C) and labels (n,), not {z.shape} and {y.shape}")
    if z.shape[1] < 2:
        raise ValueError("margins: φ needs at least two classes (Σ_{j≠y} is empty otherwise)")
    rows = np.arange(len(y))
    zy = z[rows, y]
    others = z.copy()
    others[rows, y] = -np.inf
    top = others.max(axis=1)  # the largest wrong logit: log-sum-exp without overflow
    lse = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
    return zy - lse


def challenge_phi(phi) -> np.ndarray:
    """[NE]'s bounded statistic log(p_y + 1e-45) − log(1 − p_y + 1e-45), from the exact margin.

    p_y = σ(φ) and 1 − p_y = σ(−φ); each log is taken as logaddexp(log σ(±φ), log 1e-45), so the value is
    [NE]'s float64 one (which sums the wrong classes' probabilities instead of forming 1 − p_y) up to
    rounding, and |value| ≤ log(1 + 1e45) ≈ 103.6 (PROTOCOL §8.7.0)."""
    phi = np.asarray(phi, dtype=np.float64)
    log_tiny = np.log(NE_TINY)
    log_p = -np.logaddexp(0.0, -phi)  # log σ(φ)
    log_q = -np.logaddexp(0.0, phi)  # log σ(−φ)
    return np.logaddexp(log_p, log_tiny) - np.logaddexp(log_q, log_tiny)
