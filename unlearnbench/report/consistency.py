"""The like-for-like check: were all records of one trial unlearned from the same original?

Each record is scored against its own Original and Retrain, so each stays internally sound; but
records made on two machines can carry the same trial number and start from different weights.
The board says so (a warning per trial) instead of ranking them side by side in silence.
"""
from __future__ import annotations

from ..provenance import where


def _origin(rec: dict, key: str) -> tuple:
    """What identifies the model ``key`` (original / retrain) a record was scored against: its
    weights' digest where recorded (split by ``_split_by_weights``), and always its measured metrics (records written before
    weights_digest existed, or on another device, still differ there)."""
    m = rec.get(key) or {}
    return tuple((k, round(float(m[k]), 4)) for k in sorted(m) if isinstance(m[k], (int, float)))


def _split_by_weights(group: list[dict]) -> list[list[dict]]:
    """Records with equal metrics but different recorded original weights are still different
    models; records without a recorded hash join the first hashed part."""
    by_sha: dict[str | None, list[dict]] = {}
    for r in group:
        by_sha.setdefault((r.get("weights_digest") or {}).get("original"), []).append(r)
    known = [v for k, v in by_sha.items() if k is not None]
    if len(known) <= 1:
        return [group]
    known[0] += by_sha.get(None, [])
    return known


def _describe(group: list[dict]) -> str:
    methods = sorted({r["method"] for r in group})
    more = ", ..." if len(methods) > 4 else ""
    return f"{len(group)} record(s) from {', '.join(sorted({where(r) for r in group}))} ({', '.join(methods[:4])}{more})"


def consistency(records: list[dict]) -> dict[str, list[str]]:
    """Per scenario, one warning per trial whose records were not all unlearned from the same
    original model (and scored against the same Retrain).

    The store key of an original names its recipe; the weights it holds depend on the device
    and library versions that trained it. Records from two machines can therefore carry the same
    trial number yet start from different originals: each record stays internally sound (its
    metrics and Avg. Gap use its own Original and Retrain), but rows built on different ones
    are not like for like, and the Original/Retrain rows can show only one of them."""
    out: dict[str, list[str]] = {}
    by: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        if (r.get("info") or {}).get("diagnostic"):
            continue
        by.setdefault((r["scenario"], r["trial"]), []).append(r)
    for (scen, trial), recs in sorted(by.items()):
        groups: dict[tuple, list[dict]] = {}
        for r in recs:
            groups.setdefault((_origin(r, "original"), _origin(r, "retrain")), []).append(r)
        split = [part for g in groups.values() for part in _split_by_weights(g)]
        if len(split) > 1:
            parts = "; ".join(_describe(g) for g in sorted(split, key=len, reverse=True))
            out.setdefault(scen, []).append(
                f"trial {trial}: records unlearned {len(split)} different original models: {parts}. Each record is "
                "scored against its own Original and Retrain, but rows built on different originals are not like "
                "for like, and the Original/Retrain rows show only one of them.")
    return out
