"""Which family a board row belongs to, read from what its method plugin declares, and how the
page and the plots show each family.

A family is never a list of method names: the reference rows (Original, Retrain) are the board's
own, an oracle method (``Method.oracle``) is the Retrain row, a method that reads the shared
fine-tune pool (``Method.uses_pool``: Task Arithmetic and every merge) is a merge, and every other
method is training-based. A method the board cannot look up (its plugin is not installed where the
board is built) is "other": the board says what it cannot know rather than guess from a name.
"""
from __future__ import annotations

from typing import Any

REFERENCE, MERGE, TRAINED, OTHER = "reference", "merge", "training-based", "other"
FAMILIES = (REFERENCE, MERGE, TRAINED, OTHER)  # the order of the legend, the filters and the colours

TITLES = {REFERENCE: "Reference rows (Original, Retrain)", MERGE: "Merge methods (read the fine-tune pool)",
          TRAINED: "Training-based methods", OTHER: "Other (plugin not installed here)"}

# Okabe & Ito's colour-blind-safe palette (2008), two shades per family so that neighbours within a
# family differ in lightness as well as in marker; the reference rows are black.
PALETTE = {REFERENCE: ("#000000", "#000000"), MERGE: ("#0072B2", "#56B4E9"), TRAINED: ("#D55E00", "#E69F00"),
           OTHER: ("#CC79A7", "#009E73")}
# markers within a family, in order: each method its own (marker, shade) pair; "*" and the large hollow
# circle are kept for Retrain and the Original
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "p", "h", "<", ">", "d")


def family_of(method: str, host: Any | None) -> str:
    """The family of a registered method (module docstring); OTHER without a host or for a method the
    host does not know."""
    if host is None or method not in host.methods:
        return OTHER
    m = host.methods.get(method)
    if getattr(m, "oracle", False):
        return REFERENCE
    return MERGE if getattr(m, "uses_pool", False) else TRAINED


def style_of(families: dict[str, str]) -> dict[str, tuple[str, str]]:
    """label -> (colour, marker) for the non-reference rows of a plot: within each family, in label order,
    each row the next marker, the shades alternating (and swapped on the second dozen), so that no two
    rows of a family share both up to 24 rows."""
    out: dict[str, tuple[str, str]] = {}
    for fam in FAMILIES:
        labels = sorted(lab for lab, f in families.items() if f == fam)
        for i, lab in enumerate(labels):
            out[lab] = (PALETTE[fam][(i + i // len(MARKERS)) % 2], MARKERS[i % len(MARKERS)])
    return out
