"""Reading run records (``run.json``) and saying what is wrong with a bad one.

``leaderboard``, ``reproduce`` and ``sweep`` read the same records; one truncated, empty, listed,
non-UTF-8 or half-written file must not sink them with a traceback that does not name it. Each
reader either skips a bad record with one warning line (``<path>: <what is wrong>``) and goes
on with the others, or, with ``--strict``, stops at the first one with that message (exit 2).

A metric may be NaN (JSON's ``NaN``) or null: it is a missing number, shown as missing ("–"), and
the boards say over how many seeds a mean is. A string, a list or a boolean where a number
belongs is a bad record.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from ..errors import UnlearnbenchError

SCHEMA = 1  # unlearnbench.runner.RUN_SCHEMA: the newest record layout this code reads

# Every key a record must have, and what it must be; optional sections below.
REQUIRED: dict[str, tuple[type, ...]] = {
    "scenario": (str,), "method": (str,), "trial": (int,), "config_hash": (str,), "config": (dict,),
    "used_splits": (str,), "metrics": (dict,), "original": (dict,), "retrain": (dict, type(None)),
    "timings": (dict,),
}
OPTIONAL: dict[str, tuple[type, ...]] = {
    "schema": (int,), "variant": (list,), "selection": (dict,), "info": (dict,), "sparsity": (dict,),
    "gap": (dict,), "provenance": (dict,), "weights_digest": (dict,), "scoring": (dict,), "pool_points": (list,),
    "artifacts": (dict,), "lambda": (int, float), "oracle": (bool,), "manifest_hash": (str,),
    "protocol": (int,), "split_sizes": (dict,), "outputs": (dict,),
}
METRIC_SECTIONS = ("metrics", "original", "retrain")
STRICT_NOTE = "(--strict stops at the first bad record: move it away, or run its cell again)"
_KIND = {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list",
         bool: "true/false", type(None): "null"}


class RecordError(UnlearnbenchError):
    """A run record that cannot be read: the message names the file and what is wrong with it."""


def _what(v: Any) -> str:
    for t in (bool, type(None), int, float, str, dict, list):
        if isinstance(v, t):
            return _KIND[t]
    return type(v).__name__


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def problem(rec: Any) -> str | None:
    """What is wrong with a parsed record, in a few words; None if it can be read."""
    if not isinstance(rec, dict):
        return f"it is {_what(rec)}, not a run record (a JSON object)"
    if not rec:
        return "it is an empty object {}, not a run record"
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        return f"required key(s) missing: {', '.join(missing)}"
    for k, types in {**REQUIRED, **OPTIONAL}.items():
        if k not in rec or (k in OPTIONAL and rec[k] is None):
            continue
        v = rec[k]
        if not isinstance(v, types) or (bool not in types and isinstance(v, bool)):
            want = " or ".join(_KIND.get(t, t.__name__) for t in types)
            return f"{k!r} is {_what(v)} ({json.dumps(v, default=str)[:40]}), not {want}"
    scoring = rec.get("scoring") or {}
    board = scoring.get("board", {})
    if not isinstance(board, dict) or any(not isinstance(v, str) for v in board.values()):
        return "scoring.board is not an object of column -> metric names"
    summary = scoring.get("summary", [])
    if not isinstance(summary, list) or any(not isinstance(c, list) or len(c) != 2 for c in summary):
        return "scoring.summary is not a list of [metric, heading] pairs"
    if any(not isinstance(v, str) for v in (rec.get("weights_digest") or {}).values()):
        return "weights_digest holds something other than digest strings"
    if any(not isinstance(v, str) for v in rec.get("variant") or []):
        return "'variant' holds something other than strings"
    schema = rec.get("schema")
    if schema is not None and schema > SCHEMA:
        return f"schema {schema}: written by a newer unlearnbench (this one reads schema {SCHEMA}); upgrade to read it"
    for sec in METRIC_SECTIONS:
        for name, v in (rec[sec] or {}).items():
            if v is not None and not _is_number(v):
                return f"{sec}.{name} is {_what(v)} ({json.dumps(v)[:40]}), not a number (NaN or null = missing)"
    total = rec["timings"].get("total_s")
    if not _is_number(total):
        return "timings.total_s is missing" if total is None else f"timings.total_s is {_what(total)}, not a number"
    return None


def read_record(path: str | Path) -> dict:
    """The record at ``path``; RecordError naming the file and what is wrong if it cannot be read."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RecordError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        kind = f" (a {path.suffix} file: a checkpoint?)" if path.suffix not in (".json", "") else ""
        raise RecordError(f"{path}: not a run record{kind}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                          f"{e.start}); a run.json is JSON text") from None
    if not text.strip():
        raise RecordError(f"{path}: empty file, not a run record")
    try:
        rec = json.loads(text)
    except ValueError as e:
        # isinstance, not getattr with the attribute's name as a string: that string is a method's name
        # now (`msg`, PROTOCOL §7.4.4), and the core names no method (tests/test_layout.py)
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        torn = " (truncated?)" if getattr(e, "pos", 0) >= len(text.rstrip()) or msg.startswith("Unterminated") else ""
        kind = f" (a {path.suffix} file: a checkpoint?)" if path.suffix not in (".json", "") else ""
        raise RecordError(f"{path}: not a run record{kind}: not valid JSON{torn}: {msg} at line {getattr(e, 'lineno', '?')} "
                          f"column {getattr(e, 'colno', '?')}") from None
    what = problem(rec)
    if what is not None:
        raise RecordError(f"{path}: {what}")
    return rec


def is_missing(v: Any) -> bool:
    """A metric value that stands for no number: null or NaN."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def load_records(paths: list[Path], *, strict: bool = False,
                 warn: Callable[[str], None] | None = None) -> tuple[list[tuple[Path, dict]], list[str]]:
    """Read every path: (path, record) for the good ones and one message per bad one. ``strict``:
    the first bad one raises RecordError instead; ``warn`` is called with each message as it is found."""
    good, bad = [], []
    for p in paths:
        try:
            good.append((p, read_record(p)))
        except RecordError as e:
            if strict:
                raise RecordError(f"{e} {STRICT_NOTE}") from None
            bad.append(str(e))
            if warn is not None:
                warn(str(e))
    return good, bad
