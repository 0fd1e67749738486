"""The leaderboard's plots (PNG), drawn from run records only (matplotlib, Agg, deterministic).

- ``<scen>-tradeoff.png``: forget vs retain accuracy, every pool member as a point (the paper's
  Figure 1) and each method as a marker;
- ``<scen>-nsweep.png``: a merge method's sparsity and Acc D_f against the number of merged models
  (its records that differ only in ``pool.size`` and ``pool.subset``, [P T4]): mean ± std over the
  random subsets (and seeds) per n (PROTOCOL §9.5 v2); protocol 1's nested prefixes as plain means;
- ``<scen>-depth.png``: sparsity of each merged vector by layer depth ([P T6]).
"""
from __future__ import annotations

import statistics
from pathlib import Path

PNG_META = {"Software": None}  # no version string in the file: regenerated plots compare equal


def _fig():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "svg.hashsalt": "unlearnbench"})
    return plt


def _save(fig, path: Path) -> None:
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


def _tradeoff(scen, records, rows, out, titles):
    plt = _fig()
    fig, ax = plt.subplots(figsize=(8.5, 4.6), dpi=110)
    pts = [p for r in records for p in (r.get("pool_points") or [])]
    if pts:
        ax.scatter([p["acc_retain"] for p in pts], [p["acc_forget"] for p in pts], s=9, c="0.7",
                   label="pool members (each at its own λ*)", zorder=1)
    markers = "os^vD<>phX*P"
    # default configurations only: variants (pool.size sweeps, ...) have plots of their own
    shown = [r for r in rows if r.role in ("reference", "measured") and not r.oracle and "[" not in r.label]
    if not shown:
        plt.close(fig)
        return None
    for i, r in enumerate(shown):
        x, y = r.cells["acc_retain"]["mean"], r.cells["acc_forget"]["mean"]
        ax.scatter([x], [y], marker=markers[i % len(markers)], s=40, label=r.label, zorder=2)
    ax.set_xlabel("Acc D_r (%)")
    ax.set_ylabel("Acc D_f (%)")
    ax.set_title(f"{scen}: forget vs retain (mean over seeds)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    name = f"{scen}-tradeoff.png"
    fig.tight_layout(rect=(0, 0, 1, 1))
    _save(fig, out / name)
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
    plt = _fig()
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
    _save(fig, out / name)
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
    plt = _fig()
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
    _save(fig, out / name)
    plt.close(fig)
    return name
