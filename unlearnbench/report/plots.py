"""The leaderboard's plots (PNG), drawn from run records only (matplotlib, Agg, deterministic).

- ``<scen>-tradeoff.png``: forget vs retain accuracy, every pool member as a point (the paper's
  Figure 1) and each method as a marker;
- ``<scen>-nsweep.png``: a merge method's sparsity and Acc D_f against the number of merged models
  (its records that differ only in ``pool.size`` and ``pool.subset``, [P T4]): mean ± std over the
  random subsets (and seeds) per n (PROTOCOL §9.5 v2); protocol 1's nested prefixes as plain means;
- ``<scen>-depth.png``: sparsity of each merged vector by layer depth ([P T6]).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

PNG_META = {"Software": None}  # no version string in the file: regenerated plots compare equal


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "svg.hashsalt": "unlearnbench"})
    return plt


def save_png(fig, path: Path) -> None:
    """The PNG, written atomically (a reader never sees half an image)."""
    import io

    from ..data import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=PNG_META)
    write_atomic(path, buf.getvalue())


def make_plots(scen: str, records: list[dict], rows: list, out: Path, titles: dict[str, str] | None = None) -> list[str]:
    """The plots of one scenario; ``titles`` maps method names to the names papers print."""
    made = []
    for fn in (_tradeoff, _nsweeps, _depth):
        name = fn(scen, records, rows, out, titles or {})
        if isinstance(name, list):
            made += name
        elif name:
            made.append(name)
    return made


# A method that lost more than this many points of retain accuracy against the Original has collapsed
# (a destroyed model forgets everything): the view zooms to the others and draws it on the axis edge,
# labelled with its numbers, so the methods that matter are not squeezed into one corner (issue 19).
ZOOM_DR = 10.0


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _xy(r) -> tuple[float, float] | None:
    x, y = ((r.cells.get(c) or {}).get("mean") for c in ("acc_retain", "acc_forget"))
    return (x, y) if _finite(x) and _finite(y) else None


def _view(points: list[tuple[float, float]]) -> tuple[tuple[float, float], tuple[float, float]]:
    """The axes' limits around ``points``, with a margin of 6 % of the span (at least 0.5 points)."""
    out = []
    for vals in zip(*points):
        lo, hi = min(vals), max(vals)
        pad = max(0.06 * (hi - lo), 0.5)
        out.append((lo - pad, hi + pad))
    return out[0], out[1]


def _spread(ys: list[float], lo: float, hi: float, gap: float) -> list[float]:
    """Label heights for edge markers at ``ys`` (sorted), at least ``gap`` apart, inside [lo, hi]."""
    out: list[float] = []
    for y in ys:
        out.append(max(y, out[-1] + gap) if out else y)
    over = out[-1] - hi if out else 0.0
    if over > 0:  # pushed past the top: shift all down, but never below the bottom
        out = [max(lo, v - over) for v in out]
        for i in range(1, len(out)):
            out[i] = max(out[i], out[i - 1] + gap)
    return out


def _tradeoff(scen, records, rows, out, titles):
    """Forget vs retain accuracy (the paper's Figure 1): every pool member as a grey point and each method
    (default configuration, oracle-free) as a marker by family (``families``); Retrain, the target, a black
    star on dashed cross-hairs, and the Original (no unlearning) a large hollow circle. Zoomed to the
    methods within ``ZOOM_DR`` points of the Original's Acc D_r; the rest are labelled on the left edge."""
    from matplotlib.lines import Line2D

    from .families import FAMILIES, REFERENCE, TITLES, style_of

    # default configurations only: variants (pool.size sweeps, ...) have plots of their own
    shown = [r for r in rows if r.role in ("reference", "measured") and not r.oracle and "[" not in r.label
             and _xy(r) is not None]
    if not any(r.role == "measured" for r in shown):
        return None
    refs = {r.method: r for r in shown if r.role == "reference"}
    methods = [r for r in shown if r.role == "measured"]
    orig = refs.get("original")
    floor = (_xy(orig)[0] if orig is not None else max(_xy(r)[0] for r in methods)) - ZOOM_DR
    inside = [r for r in methods if _xy(r)[0] >= floor]
    edge = sorted((r for r in methods if _xy(r)[0] < floor), key=lambda r: (_xy(r)[1], r.label))
    (x0, x1), (y0, y1) = _view([_xy(r) for r in inside + list(refs.values())])
    style = style_of({r.label: r.family for r in methods})

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 5.0), dpi=110)
    handles: list = []
    pts = [p for r in records for p in (r.get("pool_points") or [])]
    if pts:
        seen = [p for p in pts if x0 <= p["acc_retain"] <= x1 and y0 <= p["acc_forget"] <= y1]
        ax.scatter([p["acc_retain"] for p in seen], [p["acc_forget"] for p in seen], s=8, c="0.78", zorder=1)
        hidden = len(pts) - len(seen)
        handles.append(Line2D([], [], ls="", marker="o", ms=3, color="0.78",
                              label="pool members (each at its own λ*)" + (f"; {hidden} outside the view" if hidden
                                                                          else "")))
    ret = refs.get("retrain")
    if ret is not None:  # the target: where a method should land
        rx, ry = _xy(ret)
        ax.axvline(rx, color="0.35", lw=0.7, ls="--", zorder=1)
        ax.axhline(ry, color="0.35", lw=0.7, ls="--", zorder=1)
    for fam in FAMILIES:  # the legend grouped by family, each group under its title
        group = [r for r in (ret, orig) if r is not None] if fam == REFERENCE else \
            sorted((r for r in methods if r.family == fam), key=lambda r: r.label)
        if not group:
            continue
        handles.append(Line2D([], [], ls="", label=TITLES[fam]))  # a header: bolded below
        for r in group:
            label = r.label
            if r is ret:
                kw = dict(marker="*", s=190, c="#000000", zorder=4)
                label += ": the target"
            elif r is orig:
                kw = dict(marker="o", s=130, facecolors="none", edgecolors="#000000", linewidths=1.8, zorder=4)
            else:
                colour, marker = style[r.label]
                kw = dict(marker=marker, s=42, c=colour, edgecolors="white", linewidths=0.4, zorder=3)
            if r in edge:
                label += " (off the view: left edge)"
            else:
                ax.scatter(*map(list, zip(_xy(r))), **kw)
            handles.append(Line2D([], [], ls="", label=label, marker=kw["marker"], ms=math.sqrt(kw["s"]) * 0.8,
                                  mfc=kw.get("c", "none"), mec=kw.get("edgecolors", kw.get("c")),
                                  mew=kw.get("linewidths", 0.4)))
    for r, name in ((ret, "Retrain"), (orig, "no unlearning")):
        if r is not None:
            right = _xy(r)[0] > (x0 + x1) / 2  # the label on the side with room
            ax.annotate(name, _xy(r), xytext=(-9 if right else 9, -11), textcoords="offset points", fontsize=7,
                        fontweight="bold", ha="right" if right else "left")
    if edge:  # collapsed methods: a labelled marker on the left edge at their Acc D_f (clamped into the view)
        gap = 0.065 * (y1 - y0)
        ys = _spread([min(max(_xy(r)[1], y0 + gap / 2), y1 - gap / 2) for r in edge], y0 + gap / 2, y1 - gap / 2, gap)
        for r, ly in zip(edge, ys):
            x, y = _xy(r)
            colour, marker = style[r.label]
            yy = min(max(y, y0), y1)
            ax.scatter([x0], [yy], marker="<", s=46, c=colour, clip_on=False, zorder=5)
            ax.annotate(f"◀ {r.label} ({x:.1f}, {y:.1f})", (x0, yy), xytext=(x0 + 0.012 * (x1 - x0), ly),
                        textcoords="data", fontsize=6.5, va="center", color=colour, zorder=6,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7),
                        arrowprops=dict(arrowstyle="-", color=colour, lw=0.5) if abs(ly - yy) > 1e-9 else None)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("Acc D_r (%)" + (f"   (zoomed: {len(edge)} method(s) below Acc D_r {floor:.1f} are marked on the "
                                   "left edge with their (Acc D_r, Acc D_f))" if edge else ""))
    ax.set_ylabel("Acc D_f (%)")
    ax.set_title(f"{scen}: forget vs retain (mean over seeds; oracle-free selection)")
    leg = ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
                    handletextpad=0.4, labelspacing=0.35)
    for h, t in zip(handles, leg.get_texts()):
        if t.get_text() in TITLES.values():
            t.set_fontweight("bold")
    name = f"{scen}-tradeoff.png"
    fig.tight_layout()
    save_png(fig, out / name)
    plt.close(fig)
    return name


SWEEP_KEYS = ("pool.size=", "pool.subset=")  # the options of the n-ablation (PROTOCOL §9.5)


def _pool_size_sweeps(records: list[dict]) -> dict[str, dict[int, list[dict]]]:
    """Per merge method, its records by the number of merged members n, for the methods whose
    records differ from their defaults in ``pool.size`` (and which subset, ``pool.subset``) alone
    (the [P T4] sweep) at two or more n."""
    out: dict[str, dict[int, list[dict]]] = {}
    for r in records:
        if (r.get("selection") or {}).get("oracle"):
            continue
        if any(not v.startswith(SWEEP_KEYS) for v in r.get("variant") or []):
            continue  # another option differs too: not a point of the method's own sweep
        n = ((r.get("info") or {}).get("merge_cost") or {}).get("n")
        if n:
            out.setdefault(r["method"], {}).setdefault(int(n), []).append(r)
    return {m: by_n for m, by_n in out.items() if len(by_n) >= 2}


def _nsweeps(scen, records, rows, out, titles) -> list[str]:
    """One plot per method with a pool-size sweep: ``<scen>-nsweep.png`` when one method has one,
    ``<scen>-nsweep-<method>.png`` each when several do."""
    sweeps = sorted(_pool_size_sweeps(records).items())
    return [_nsweep(scen, method, by_n, out, titles.get(method, method),
                    f"{scen}-nsweep.png" if len(sweeps) == 1 else f"{scen}-nsweep-{method}.png")
            for method, by_n in sweeps]


def _random_subsets(by_n: dict[int, list[dict]]) -> bool:
    """Whether the sweep's records merged random subsets (PROTOCOL §9.5 v2), not protocol 1's
    nested prefixes (records without ``pool.subset`` took the first n)."""
    return any(str(r["config"]["pool"].get("subset", "prefix")) != "prefix" for rs in by_n.values() for r in rs)


def _std(vals: list[float]) -> float:
    return statistics.stdev(vals) if len(vals) > 1 else 0.0


def _nsweep(scen, method, by_n, out, title, name):
    ns = sorted(by_n)
    sp_runs = [[x["sparsity"]["u_all"] for x in by_n[n]] for n in ns]
    af_runs = [[x["metrics"]["acc_forget"] for x in by_n[n]] for n in ns]
    sp, af = [statistics.mean(v) for v in sp_runs], [statistics.mean(v) for v in af_runs]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    ax2 = ax.twinx()
    if _random_subsets(by_n):  # v2: each n is several random subsets (x seeds): mean ± std over them
        runs = sorted({len(v) for v in sp_runs})
        ax.errorbar(ns, sp, yerr=[_std(v) for v in sp_runs], fmt="o-", capsize=3, label="sparsity U_all (%)")
        ax2.errorbar(ns, af, yerr=[_std(v) for v in af_runs], fmt="s--", color="C1", capsize=3,
                     label="Acc D_f (%)")
        ax.set_xlabel(f"number of merged models n (random subsets; mean ± std over "
                      f"{'/'.join(map(str, runs))} runs)")
    else:  # protocol 1: one nested prefix per n (the plot its boards were built with)
        ax.plot(ns, sp, "o-", label="sparsity U_all (%)")
        ax.set_xlabel("number of merged models n (first n of the pool)")
        ax2.plot(ns, af, "s--", color="C1", label="Acc D_f (%)")
    ax.set_ylabel("sparsity (%)")
    ax2.set_ylabel("Acc D_f (%)")
    ax.set_title(f"{scen}: {title} vs n (P T4)")
    fig.legend(loc="lower right", fontsize=6)
    fig.tight_layout()
    save_png(fig, out / name)
    plt.close(fig)
    return name


def _depth(scen, records, rows, out, titles):
    groups: dict[str, dict[str, list[float]]] = {}
    for r in records:
        sp = r.get("sparsity") or {}
        if not sp.get("by_depth") or (r.get("selection") or {}).get("oracle") or r["config"]["pool"]["size"]:
            continue
        d = groups.setdefault(r["method"], {})
        for g, v in sp["by_depth"].items():
            d.setdefault(g, []).append(v["sparsity"])
    if not groups:
        return None
    layers = list(next(iter(groups.values())))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    width = 0.8 / len(groups)
    for i, (method, d) in enumerate(sorted(groups.items())):
        ax.bar([j + i * width for j in range(len(layers))], [statistics.mean(d.get(g, [0])) for g in layers],
               width, label=method)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))])
    ax.set_xticklabels(layers)
    ax.set_xlabel("layer group (module, in depth order)")
    ax.set_ylabel("sparsity of τ (%)")
    ax.set_title(f"{scen}: merged-vector sparsity by depth (P T6)")
    ax.legend(fontsize=6)
    name = f"{scen}-depth.png"
    fig.tight_layout()
    save_png(fig, out / name)
    plt.close(fig)
    return name
