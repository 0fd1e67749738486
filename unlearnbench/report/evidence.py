"""What each board row rests on, as the page links it: the run records it averages, the resolved
config and its hash, and the one command that reruns it (issue 19 acceptance 4).

Links are relative to the board folder, the folder that holds ``runs/`` (``unlearnbench leaderboard
runs --out .``, as both committed boards are built), so the page works from ``file://`` and from any
static host, and its text does not depend on where a build writes it (the regenerate test writes
elsewhere). Each (scenario, config hash) gets ``configs/<hash[:16]>.json``: the resolved config as its
first seed recorded it, with the full hash.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import PurePosixPath

from .rows import Row

CONFIG_DIR = "configs"


def config_file(config_hash: str) -> str:
    return f"{CONFIG_DIR}/{config_hash[:16]}.json"


def config_docs(records: list[dict], runs: str) -> dict[str, str]:
    """file (under the board folder) -> its JSON text: one per config hash of the records, from the record
    of its lowest trial (then path), which the file names."""
    first: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: (r["trial"], r["_file"])):
        first.setdefault(r["config_hash"], r)
    out = {}
    for h, r in sorted(first.items()):
        doc = {"config_hash": h, "scenario": r["scenario"], "method": r["method"], "variant": r.get("variant") or [],
               "from": f"{runs}/{r['_file']}", "config": r["config"]}
        out[config_file(h)] = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    return out


@dataclass
class Evidence:
    records: list[tuple[int, str]]  # (trial, link)
    config: str = ""  # link to the resolved config, "" for rows without one (reference, paper, missing)
    config_hash: str = ""
    command: str = ""  # the one command (run from the board folder) that reruns the row, or runs it
    note: str = ""  # what a row without records rests on


def evidence(row: Row, runs: str, files: dict[str, dict], trials: list[int], scen: str) -> Evidence:
    """``files``: every record by its path under runs/ (``_file``); ``trials``: the board's trials."""
    paths = list(row.extra.get("records") or [])
    recs = [(files[p]["trial"], f"{runs}/{p}") for p in paths if p in files]
    h = row.extra.get("config_hash", "")
    if row.role == "paper":
        return Evidence([], note=f"the paper's {row.source}, typed from the paper (PROTOCOL §9); not measured here")
    if row.role == "missing":
        return Evidence([], command=f"unlearnbench sweep --methods {row.method} --scenarios {scen} --seeds "
                                    f"{','.join(map(str, trials))} --runs-dir {runs}", note="no record yet")
    if not paths:
        return Evidence([])
    folders = {PurePosixPath(p).parent.parent.as_posix() for p in paths}
    whole = len(folders) == 1 and sum(f.startswith(next(iter(folders)) + "/") for f in files) == len(paths)
    target = f"{runs}/{next(iter(folders))}" if whole else " ".join(f"{runs}/{p}" for p in paths)
    note = "" if h else "the Original and Retrain of each trial, as recorded with these runs"
    return Evidence(recs, config_file(h) if h else "", h, f"unlearnbench reproduce {target}", note)


def evidence_cell(ev: Evidence) -> str:
    """The row's last cell: a summary that opens onto the links and the command."""
    e = html.escape
    if not ev.records and not ev.command and not ev.note:
        return "–"
    summary = f"{len(ev.records)} run{'s' if len(ev.records) != 1 else ''}" if ev.records else (
        "paper" if not ev.command else "run it")
    parts = []
    if ev.records:  # the link text is the seed: the page carries ~120 rows of these
        parts.append("<div>Records, seed " + " ".join(f'<a href="{e(href)}">{t}</a>' for t, href in ev.records)
                     + "</div>")
    if ev.config:  # the full hash is in the config file
        parts.append(f'<div><a href="{e(ev.config)}">Resolved config</a>, hash <code>{e(ev.config_hash[:16])}</code>'
                     "</div>")
    if ev.note:
        parts.append(f"<div>{e(ev.note)}</div>")
    if ev.command:
        parts.append(f'<div>{"Rerun" if ev.records else "Run"} (from this folder): <code class="cmd">{e(ev.command)}'
                     "</code></div>")
    return f'<details><summary>{e(summary)}</summary><div class="ev">{"".join(parts)}</div></details>'
