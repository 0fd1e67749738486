"""The table ``unlearnbench run`` prints after its trials: Original, Retrain (where the scenario
has one) and the method, each over the trials just run, with the columns the scenario's Scoring
names for the summary, computed as the leaderboard computes its rows."""
from __future__ import annotations

import math
import statistics

from ..scenario import Scoring
from .render import format_cell
from .rows import row_from


def _fmt(values: list[float]) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def summarise(records: list[dict]) -> list[dict]:
    """Rows for Original, Retrain and the method over trials, as the leaderboard computes them."""
    if not records:
        return []
    has_oracle = records[0]["retrain"] is not None
    sources = [("Original", "original"), ("Retrain", "retrain")] if has_oracle else [("Original", "original")]
    variant = (records[0].get("info") or {}).get("variant")
    name = records[0]["method"] + (f" ({variant})" if variant and variant != "default" else "")
    trials = [r["trial"] for r in records]
    columns = [tuple(c) for c in (records[0].get("scoring") or {}).get("summary", Scoring().summary)]
    rows = []
    for label, key in sources + [(name, "metrics")]:
        stats = row_from(label, key, [r[key] for r in records], [r["retrain"] for r in records], trials,
                         "measured", columns)
        row = {"": label, **{h: format_cell(stats.cells[k]) for k, h in columns}}
        if stats.gap is not None:
            paired = f" ({format_cell(dict(zip(('mean', 'std'), stats.gap_paired)))})" if len(records) > 1 else ""
            row["Avg. Gap"] = f"{stats.gap:.2f}{paired}"
        row["λ*"] = _fmt([r["lambda"] for r in records]) if key == "metrics" else ""
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    heads = list(rows[0])
    width = {h: max(len(h), *(len(str(r.get(h, ""))) for r in rows)) for h in heads}
    line = "  ".join(h.ljust(width[h]) for h in heads)
    out = [line, "  ".join("-" * width[h] for h in heads)]
    for r in rows:
        out.append("  ".join(str(r.get(h, "")).ljust(width[h]) for h in heads))
    return "\n".join(out)
