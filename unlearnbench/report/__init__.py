"""The report: leaderboards generated from run records (Markdown + CSV per scenario, plots, one
HTML page) and the CLI's run summary (`unlearnbench leaderboard`, `unlearnbench run`).

Everything here is derived from ``run.json`` files; nothing is typed in. Rows are grouped by
(method, config hash) and aggregated over trials: mean ± std, the number of seeds, Avg. Gap
from the trial means (paper-comparable) and paired per trial (PROTOCOL §8.3). Rows chosen by
an oracle selection rule go to their own table, never into the default ranking (§1.4). The
best Avg. Gap is marked only when it is separated from the runner-up by more than seed noise.

- ``rows``: records -> rows per scenario, and the noise rule that marks a winner;
- ``consistency``: the like-for-like check (one original model per trial);
- ``checks``: one protocol version per build, committed code, and the lines a v2 board prints
  (character check per trial, code commits, smoke scenarios);
- ``render``: Markdown, CSV and the index;
- ``page``: the HTML page (switchable tables, filters, each row's evidence: ``evidence``; families of
  methods: ``families``), a static site with the board folder;
- ``groups``: the boards over a group of scenarios (``Scenario.group``), each member a column, with
  their unweighted mean;
- ``plots``: the PNG plots; ``forest``: the claims' forest plots;
- ``summary``: the table ``unlearnbench run`` prints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..data import write_atomic
from .checks import BoardError, board_notes, check_clean, check_protocols
from .consistency import consistency
from .evidence import CONFIG_DIR, config_docs, config_file
from .groups import group_tables, groups_of, render_group_csv, render_group_markdown
from .records import RecordError, load_records, read_record
from .page import render_html
from .render import compare_versions, format_cell, render_csv, render_index, render_markdown
from .rows import NOISE_Z, Row, aggregate, beats_original, optimism_rows, row_from, scoring_of, variant_label
from .summary import format_table, summarise

__all__ = ["NOISE_Z", "BoardError", "RecordError", "Row", "aggregate", "build", "consistency", "format_cell", "format_table",
           "load_records", "load_runs", "read_record", "render_csv", "render_html", "render_index", "render_markdown",
           "row_from", "scoring_of", "summarise", "variant_label"]


def load_runs(runs_dir: str | Path, *, strict: bool = False, bad: list[str] | None = None,
              warn: Callable[[str], None] | None = None) -> list[dict]:
    """Every readable run.json under ``runs_dir``, in path order, each with ``_file`` (its path there).

    A bad record (``records.problem``) is skipped, its message appended to ``bad`` and passed to
    ``warn``; with ``strict`` the first one raises RecordError instead."""
    good, msgs = load_records(sorted(Path(runs_dir).rglob("run.json")), strict=strict, warn=warn)
    if bad is not None:
        bad += msgs
    out = []
    for p, rec in good:
        rec["_file"] = str(p.relative_to(runs_dir))
        out.append(rec)
    return out


def build(runs_dir: str | Path, out_dir: str | Path, host: Any | None = None, *, strict: bool = False,
          warn: Callable[[str], None] | None = None, allow_dirty: bool = False,
          compare: str | Path | None = None) -> dict:
    """Write <scenario>.md/.csv, <group>.md/.csv (``groups``), plots/*.png and index.html under ``out_dir``;
    returns what was written
    (``bad``: one message per record skipped as unreadable; ``strict``: the first one is an error).
    Records of two protocol versions, or protocol-2 records from uncommitted code (unless
    ``allow_dirty``), are a BoardError before anything is written (``checks``)."""
    from .plots import make_plots

    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    bad: list[str] = []
    records = load_runs(runs_dir, strict=strict, bad=bad, warn=warn)
    protocol = check_protocols(records)
    check_clean(records, allow_dirty)
    tables = aggregate(records, host)
    tables = {s: tables[s] for s in sorted(tables)}
    warnings = consistency(records)
    titles = {n: host.methods.get(n).title or n for n in host.methods.names()} if host is not None else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plots").mkdir(exist_ok=True)
    written, plots, notes, optimism, extra = [], {}, {}, {}, {}
    from .ensemble import claims_section, ensemble_csv, ensemble_section, load_results

    ensembles = load_results(runs_dir)  # PROTOCOL §8.7: only where ensemble.json results exist
    for scen, rows in tables.items():
        recs = [r for r in records if r["scenario"] == scen]
        plots[scen] = make_plots(scen, recs, rows, out_dir / "plots", titles)
        notes[scen] = board_notes(scen, recs, host, protocol)
        if (protocol or 1) >= 2:  # PROTOCOL §5(d) v2: does anything beat no unlearning; selection optimism
            beat, orig = beats_original(rows)
            if beat is None:  # one trial: "no method can be told apart" would read as a finding (as claims.md)
                notes[scen].append(
                    f"**Against no unlearning:** not testable yet: the board has {len(orig.paired)} trial, and "
                    f"the {NOISE_Z:g}-SE rule on the paired per-trial gaps needs at least 2.")
            elif orig is not None and orig.gap is not None:
                notes[scen].append(
                    f"**Against no unlearning:** {len(beat)} method(s) have an Avg. Gap below the Original's "
                    f"({orig.gap:.2f}) beyond seed noise (the board's {NOISE_Z:g}-SE rule on the paired per-trial "
                    "gaps)" + (f": {', '.join(beat)}." if beat else "; on this board no method can be told "
                                                                    "apart from leaving the model as it was."))
            optimism[scen] = optimism_rows(recs, host)
        md = render_markdown(scen, rows, plots[scen], warnings.get(scen), notes[scen], optimism.get(scen))
        if scen in ensembles:  # its own table, never mixed into Avg. Gap (issue 18 acceptance 4)
            extra[scen] = ensemble_section(scen, ensembles[scen], sorted({r.method for r in rows if r.role == "measured"}))
            md = md.rstrip("\n") + "\n" + extra[scen]
            write_atomic(out_dir / f"{scen}-ensemble.csv", ensemble_csv(ensembles[scen]))
            written.append(f"{scen}-ensemble.csv")
        write_atomic(out_dir / f"{scen}.md", md)
        write_atomic(out_dir / f"{scen}.csv", render_csv(rows))
        written += [f"{scen}.md", f"{scen}.csv", *(f"plots/{p}" for p in plots[scen])]
    # the page links records and configs relative to the board folder, the folder that holds runs_dir (as
    # --compare's path is): the same text wherever a build writes it (evidence's docstring)
    runs = runs_dir.resolve().name
    used = {r.extra["config_hash"] for rows in tables.values() for r in rows if r.extra.get("config_hash")}
    docs = {f: d for f, d in config_docs(records, runs).items() if any(f == config_file(h) for h in used)}
    if docs:
        (out_dir / CONFIG_DIR).mkdir(exist_ok=True)
    for f, text in docs.items():
        write_atomic(out_dir / f, text)
    written += list(docs)
    forests = None
    if (protocol or 1) >= 2:  # the paper's claims, checked on these records (issue 16 acceptance 6)
        from .claims import claims_page, comparisons
        from .forest import forest_plots

        page = claims_page(records, host)
        if any(e.get("methods") for e in ensembles.values()):  # issue 18 acceptance 5
            page = page.rstrip("\n") + "\n" + claims_section(ensembles)
        write_atomic(out_dir / "claims.md", page)
        forests = forest_plots(comparisons(records, host), out_dir / "plots")
        written += ["claims.md", *(f"plots/{name}" for _, name, _ in forests)]
    write_atomic(out_dir / "index.html", render_html(tables, plots, warnings, notes, optimism, records=records,
                                                     runs=runs, forests=forests, claims=forests is not None,
                                                     extra=extra))
    # boards over a group of scenarios (``Scenario.group``: [P T1]'s mean over data sets), where one has records
    grouped = []
    for group in groups_of(host):
        tabs = group_tables(group, records)
        if tabs:
            write_atomic(out_dir / f"{group.name}.md", render_group_markdown(group, tabs))
            write_atomic(out_dir / f"{group.name}.csv", render_group_csv(group, tabs))
            written += [f"{group.name}.md", f"{group.name}.csv"]
            grouped.append((group.name, group.title))
    versions = None
    if compare is not None:  # another protocol's records: each method's Avg. Gap under both, side by side
        old = load_runs(compare, strict=strict, warn=warn)
        import os

        # as seen from the board folder the records live in (runs_dir's parent), where the index's command
        # is run: the same text wherever the files are written (the regenerate test writes elsewhere)
        rel = Path(os.path.relpath(Path(compare).resolve(), runs_dir.resolve().parent)).as_posix()
        versions = compare_versions(aggregate(old, host), check_protocols(old), tables, protocol, rel)
    write_atomic(out_dir / "README.md", render_index(tables, records, versions,
                                                     rel if compare is not None else None,
                                                     claims=(protocol or 1) >= 2, groups=grouped))
    written += ["index.html", "README.md"]
    return {"records": len(records), "bad": bad, "scenarios": list(tables), "written": written,
            "warnings": {s: w for s, w in warnings.items() if s in tables}}
