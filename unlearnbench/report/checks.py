"""What a board's records must satisfy before it is built, and the lines a board prints about them
(PROTOCOL §11 v2; ``build`` runs both).

- One protocol version per build: records carry ``protocol`` (records without the key are protocol
  1); a board never mixes versions (``check_protocols``).
- Protocol 2 and later: every record comes from committed code with no uncommitted change to the
  package's sources (``provenance.git_sha`` without ``-dirty``; the rule is
  ``unlearnbench.provenance.DIRTY_RULE``), and the board lists the code commits it was built from.
  ``allow_dirty`` builds anyway, and the board says it is not one to commit. Protocol-1 boards are
  left exactly as they were built (115 of their records came from uncommitted work trees).
- Protocol 2: the character check of PROTOCOL §2.1 on every trial, from the records' original and
  Retrain metrics (``unlearnbench.character.trial_character``), failures named by trial and
  condition; a smoke scenario's sentence (``Scenario.smoke``).
"""
from __future__ import annotations

from typing import Any

from ..errors import UnlearnbenchError


class BoardError(UnlearnbenchError):
    """Records that cannot make one board: the message says which and what to do."""


def protocol_of(rec: dict) -> int:
    """The PROTOCOL version a record follows; records from before the key existed are protocol 1."""
    return int(rec.get("protocol", 1))


def check_protocols(records: list[dict]) -> int | None:
    """The one protocol version of ``records`` (None for none); BoardError when they mix versions."""
    by: dict[int, list[dict]] = {}
    for r in records:
        by.setdefault(protocol_of(r), []).append(r)
    if len(by) > 1:
        parts = "; ".join(f"{len(rs)} of protocol {p} (e.g. {rs[0].get('_file', rs[0]['scenario'])})"
                          for p, rs in sorted(by.items()))
        raise BoardError(f"the records mix protocol versions: {parts}. A board never mixes versions (PROTOCOL §11; "
                         "a record without a 'protocol' key is protocol 1): build each version's records from a "
                         "folder of their own")
    return next(iter(by), None)


def dirty_reason(rec: dict) -> str | None:
    """Why a record does not come from committed code (None: it does)."""
    prov = rec.get("provenance") or {}
    sha = prov.get("git_sha")
    if not sha:
        return "no git commit recorded"
    if str(sha).endswith("-dirty") or prov.get("git_dirty"):
        files = prov.get("git_dirty") or []
        return "uncommitted source changes" + (f" ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})"
                                               if files else "")
    return None


def dirty_records(records: list[dict]) -> list[tuple[dict, str]]:
    """(record, reason) for every protocol-2-or-later record not from committed code."""
    return [(r, why) for r in records if protocol_of(r) >= 2 for why in [dirty_reason(r)] if why]


def check_clean(records: list[dict], allow_dirty: bool = False) -> None:
    """BoardError unless every protocol-2 record comes from committed code (or ``allow_dirty``)."""
    bad = dirty_records(records)
    if bad and not allow_dirty:
        rec, why = bad[0]
        raise BoardError(f"{len(bad)} of {len(records)} records do not come from committed code (e.g. "
                         f"{rec.get('_file', rec['scenario'])}: {why}); every record on a board must (PROTOCOL §11). "
                         "Commit the code and rerun those cells, or pass --allow-dirty for a board that is not "
                         "to be committed")


def code_commits(records: list[dict]) -> list[tuple[str, int]]:
    """(commit, number of records) for the code the records ran, most records first."""
    counts: dict[str, int] = {}
    for r in records:
        sha = str((r.get("provenance") or {}).get("git_sha") or "unknown")
        counts[sha] = counts.get(sha, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return f"Retrain {v[0]:.2f}, original {v[1]:.2f}"
    return f"{v:.2f}"


def character_line(records: list[dict]) -> str | None:
    """The board's sentence on the §2.1 character check of each of its trials (None: nothing to
    check, a scenario without a Retrain oracle)."""
    from ..character import trial_character

    per_trial: dict[int, dict] = {}
    for r in sorted(records, key=lambda r: r.get("_file", "")):
        per_trial.setdefault(r["trial"], r)  # one original and Retrain per trial (report.consistency)
    if not any(r.get("retrain") for r in per_trial.values()):
        return None
    results = {t: trial_character(r) for t, r in sorted(per_trial.items())}
    unchecked = [t for t, c in results.items() if c is None]
    failed = {t: c for t, c in results.items() if c is not None and not c["ok"]}
    passed = [t for t, c in results.items() if c is not None and c["ok"]]
    tail = (f" Not checked on trial(s) {', '.join(map(str, unchecked))}: the records carry no split sizes."
            if unchecked else "")
    if not failed:
        if not passed:
            return f"Character check (PROTOCOL §2.1): not run.{tail}"
        return f"Character check (PROTOCOL §2.1): passes on every trial ({', '.join(map(str, passed))}).{tail}"
    parts = "; ".join(f"trial {t}: " + ", ".join(f"{name} ({_value(c['checks'][name]['value'])})"
                                                 for name in c["failed"]) for t, c in failed.items())
    ok = f" It passes on trial(s) {', '.join(map(str, passed))}." if passed else ""
    return (f"**Character check (PROTOCOL §2.1) fails** on {len(failed)} of {len(results)} trials, which do not "
            f"keep the reference recipe's character: {parts}.{ok}{tail}")


def board_notes(scen: str, records: list[dict], host: Any | None = None, protocol: int | None = None) -> list[str]:
    """The lines a protocol-2 board prints above its tables (none for protocol 1, whose boards stay
    as they were built): the smoke sentence, the character check per trial, the code commits."""
    if not records or (protocol if protocol is not None else protocol_of(records[0])) < 2:
        return []
    notes = []
    scenario = host.scenarios.get(scen) if host is not None and scen in host.scenarios else None
    smoke = str(getattr(scenario, "smoke", "") or "")
    if smoke:
        notes.append(f"**Smoke scenario: it cannot rank methods.** {smoke}")
    line = character_line(records)
    if line:
        notes.append(line)
    commits = ", ".join(f"`{sha[:12]}{'-dirty' if sha.endswith('-dirty') else ''}` ({n} record{'s' * (n != 1)})"
                        for sha, n in code_commits(records))
    notes.append(f"Protocol {protocol_of(records[0])}; built from the records of code commit(s) {commits}.")
    dirty = dirty_records(records)
    if dirty:
        notes.append(f"**Not from committed code:** {len(dirty)} of {len(records)} records ({dirty[0][1]}, ...); "
                     "this board was built with --allow-dirty and is not one to commit (PROTOCOL §11).")
    return notes
