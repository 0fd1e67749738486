"""The claims at a glance: one forest plot per claim of claims.md (``plots/claims-<letter>.png``).

Each row is one comparison on one board under one rule (the lines of claims.md, ``claims.comparisons``):
the mean per-seed difference with its ``NOISE_Z``-standard-error interval, and the zero line. A claim
holds where the interval lies left of zero (the claimed method lower), is refuted where it lies right
of it, and is within noise where it crosses it: the verdict claims.md prints, coloured (Okabe & Ito).
"""
from __future__ import annotations

from pathlib import Path

from .claims import Comparison, verdict
from .rows import NOISE_Z

# claims.md's claims, as the page titles them (report/claims.py's docstring has the sources)
CLAIMS = {"a": "(a) NegMerge below Task Arithmetic's single best",
          "b": "(b) consensus < all < conflict",
          "c": "(c) sparser and forgetting as well at larger n",
          "d": "(d) NegMerge below each training-based baseline",
          "e": "(e) an oracle flatters Task Arithmetic more than NegMerge"}
COLOURS = {"supported": "#009E73", "refuted": "#D55E00"}  # within noise and untestable: grey
NOISE = "#6b6b6b"


def _short(rule: str) -> str:
    return "ORACLE" if rule.startswith("ORACLE") else "oracle-free" if rule.startswith("oracle-free") else "own rule"


def forest_plots(every: list[Comparison], out: Path) -> list[tuple[str, str, str]]:
    """(claim letter, file name, title) of each plot written under ``out``; a claim with no comparison
    that has at least one seed gets none (the page says so)."""
    from .plots import pyplot, save_png

    made = []
    for letter in sorted({c.claim for c in every}):
        cs = [c for c in every if c.claim == letter and c.pairs]
        if not cs:
            continue
        units = list(dict.fromkeys(c.unit for c in cs))  # one panel per unit ((c): sparsity, Acc D_f)
        groups = {u: list(dict.fromkeys(c.what for c in cs if c.unit == u)) for u in units}
        heights = [sum(1 + sum(1 for c in cs if c.what == w) for w in groups[u]) for u in units]
        plt = pyplot()
        fig, axes = plt.subplots(len(units), 1, figsize=(8.0, 0.9 + 0.19 * sum(heights) + 0.45 * len(units)),
                                 dpi=110, squeeze=False, gridspec_kw={"height_ratios": heights})
        for ax, unit in zip(axes[:, 0], units):
            labels, y = [], 0
            for what in groups[unit]:
                labels.append((y, what))  # the comparison's header row, bolded below
                y += 1
                for c in (c for c in cs if c.what == what):
                    diffs = [d for _, d in c.pairs]
                    v, m, se = verdict(diffs)
                    colour = COLOURS.get(v, NOISE)
                    if se is not None:
                        ax.errorbar([m], [y], xerr=[[NOISE_Z * se], [NOISE_Z * se]], fmt="o", ms=4, color=colour,
                                    capsize=2.5, lw=1.2)
                    else:  # one seed: its difference, no interval
                        ax.plot([m], [y], "o", ms=4, mfc="white", mec=colour)
                    ax.text(1.005, y, v, transform=ax.get_yaxis_transform(), fontsize=6.5, va="center", color=colour)
                    labels.append((y, f"{c.scenario} · {_short(c.rule)} (n={len(diffs)})"))
                    y += 1
            ax.axvline(0.0, color="0.2", lw=0.8)
            ax.set_yticks([t for t, _ in labels])
            for t, (_, lab) in zip(ax.set_yticklabels([lab for _, lab in labels], fontsize=6.5), labels):
                if lab in groups[unit]:
                    t.set_fontweight("bold")
            ax.tick_params(axis="y", length=0)
            ax.set_ylim(y - 0.4, -1.0)
            ax.set_xlabel(f"mean per-seed difference in {unit} ± {NOISE_Z:g} SE  (left of 0: the claim holds)",
                          fontsize=7)
            ax.grid(axis="x", color="0.92", lw=0.6)
            ax.set_axisbelow(True)
        axes[0, 0].set_title(CLAIMS.get(letter, f"({letter})"), fontsize=9)
        name = f"claims-{letter}.png"
        # margins from the longest row label instead of tight_layout, which draws the figure twice (~2x the
        # cost on every protocol-2 build): ~0.047 in per character at 6.5 pt, bold headers a little wider
        width = fig.get_figwidth()
        longest = max(len(c.what) * 1.25 for c in cs) if cs else 0
        longest = max(longest, *(len(f"{c.scenario} · {_short(c.rule)} (n=00)") for c in cs))
        height = fig.get_figheight()
        fig.subplots_adjust(left=min(0.5, (0.15 + 0.047 * longest) / width), right=1 - 0.85 / width,
                            top=1 - 0.4 / height, bottom=0.5 / height, hspace=0.9 / max(1, height / len(units)))
        save_png(fig, out / name)
        plt.close(fig)
        made.append((letter, name, CLAIMS.get(letter, f"({letter})")))
    return made
