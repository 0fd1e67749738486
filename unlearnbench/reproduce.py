"""Rerun recorded cells and say whether the numbers come out the same.

A record names its full resolved config, and its config hash is what `sweep` uses to skip a
cell. A code change that alters results does not change that hash, so a committed record could
go stale silently. ``unlearnbench reproduce`` reruns each record's exact config, threads and
device included, from an empty store and compares metrics, λ, the chosen hyperparameters and,
where both have them, the weights' digests.

Why an empty store: its keys name a recipe, not the weights. On CPU the thread count changes the
arithmetic (a digits original trained on 2 threads instead of 1 gave other pool members, and
5 of 21 cells differed), so a store filled under other settings would not reproduce a record.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import ConfigError
from .provenance import where

SECTIONS = ("metrics", "original", "retrain")


def find_records(paths: Iterable[str | Path]) -> list[Path]:
    """The run.json files named, or under the folders named. A file named explicitly must be a run
    record (a checkpoint given by mistake is one error, not a JSON traceback)."""
    from .report.records import RecordError, read_record

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            try:
                read_record(p)
            except RecordError as e:  # a checkpoint given by mistake: one message naming it
                raise RecordError(f"{e}; give run.json files or folders of them") from None
            out.append(p)
        elif p.is_dir():
            out += sorted(p.rglob("run.json"))
        else:
            raise ConfigError(f"{p} is neither a run.json nor a folder of runs")
    return out


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or a folder under it (both resolved)."""
    return a == b or b in a.parents


def _runs_root(record: Path) -> Path:
    """The runs folder a record lies in (<root>/<scenario>/<run>/seed-<n>/run.json), else its own folder."""
    p = record.resolve()
    return p.parents[3] if p.parent.name.startswith("seed-") and len(p.parents) > 3 else p.parent


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def keep_rerun(src: Path, dest_dir: Path, new_name: bool) -> Path:
    """Copy a rerun's record (``src``) to ``dest_dir``, atomically (temp file + os.replace), never
    over an existing file: with ``new_name``, or where a run.json is already there, it is written as
    ``run.reproduced-<UTC time>.json`` beside it, which no reader of run.json picks up."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "run.json"
    if new_name or dest.exists():
        base = f"run.reproduced-{_stamp()}"
        dest, i = dest_dir / f"{base}.json", 1
        while dest.exists():
            i += 1
            dest = dest_dir / f"{base}-{i}.json"
    tmp = dest_dir / f".{dest.name}.{os.getpid()}.tmp"
    tmp.write_bytes(src.read_bytes())
    if dest.exists():  # another process took the name meanwhile: never over it
        tmp.unlink()
        return keep_rerun(src, dest_dir, True)
    os.replace(tmp, dest)
    return dest


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _chosen(rec: dict) -> Any:
    return ((rec.get("selection") or {}).get("params") or {}).get("chosen")


def compare(old: dict, new: dict) -> list[str]:
    """What differs between a record and its rerun, one line each (empty: reproduced)."""
    diffs = []
    for sec in SECTIONS:
        a, b = old.get(sec) or {}, new.get(sec) or {}
        diffs += [f"{sec}.{k}: recorded {a.get(k)!r}, now {b.get(k)!r}"
                  for k in sorted(set(a) | set(b)) if not _same(a.get(k), b.get(k))]
    if not _same(old.get("lambda"), new.get("lambda")):
        diffs.append(f"lambda: recorded {old.get('lambda')!r}, now {new.get('lambda')!r}")
    if _chosen(old) != _chosen(new):
        diffs.append(f"chosen hyperparameters: recorded {_chosen(old)!r}, now {_chosen(new)!r}")
    a, b = old.get("weights_digest") or {}, new.get("weights_digest") or {}
    diffs += [f"weights_digest.{k}: recorded {a[k][:12]}, now {b[k][:12]}" for k in sorted(set(a) & set(b))
              if a[k] != b[k]]
    return diffs


def _where(rec: dict) -> str:
    return f"{where(rec)}, {(rec.get('provenance') or {}).get('threads')} thread(s)"


def reproduce(host, records: list[Path], *, store_root: str | None = None, out_dir: str | None = None,
              data_root: str | None = None, echo: Callable[[str], None] = print, strict: bool = False) -> dict:
    """Rerun every record; returns counts and, per record, its differences (or why it was skipped).

    ``store_root`` None: a fresh temporary store, so nothing stored earlier (perhaps by older code)
    is reused. ``out_dir``: where the reruns' records are kept (default: discarded), beside the old
    ones and never over them (``keep_rerun``); ``kept`` lists them. Every record is read before
    anything reruns: a bad one (``report.records``) is reported with one warning line and skipped
    (counted ``bad``), or with ``strict`` it is one error (RecordError) and nothing runs.
    """
    import torch

    from .config import resolve
    from .report.records import load_records
    from .runner import run_trial
    from .store import Store

    good, bad = load_records(list(records), strict=strict, warn=lambda m: echo(f"warning: {m}; skipped"))
    counts = {"reproduced": 0, "differs": 0, "skipped": 0, "bad": len(bad)}
    details: dict[str, list[str]] = {}
    kept: list[str] = []
    raw_cache: dict = {}
    keep = Path(out_dir) if out_dir else None
    # --out is (or is inside) a folder holding records being reproduced: new names, so a later
    # reproduce of that folder still compares against the original records, not the reruns
    new_names = keep is not None and any(_inside(keep.resolve(), _runs_root(p)) for p, _ in good)
    with tempfile.TemporaryDirectory(prefix="unlearnbench-reproduce-") as tmp:
        store = Store(store_root or Path(tmp) / "store")
        runs = Path(tmp) / "runs"
        for path, old in good:
            tag = f"{old['scenario']} / {path.parent.parent.name} / seed {old['trial']}"
            res = resolve(host, file_layer=old["config"], device_here=False, protocol=old.get("protocol", 1))  # no GPU here: skipped below
            if res.hash != old["config_hash"]:
                raise ConfigError(f"{path}: its config no longer resolves to the recorded hash "
                                  f"({res.hash[:12]} != {old['config_hash'][:12]}); the config schema changed "
                                  "since it was recorded, so it cannot be rerun as it was")
            if str(res.cfg.device).startswith("cuda") and not torch.cuda.is_available():
                counts["skipped"] += 1
                details[tag] = [f"skipped: recorded on {_where(old)}; this machine has no CUDA device"]
                echo(f"skipped {tag}: needs CUDA")
                continue
            new = run_trial(res, int(old["trial"]), store=store, runs_dir=runs, data_root=data_root,
                            raw_cache=raw_cache)
            if keep is not None:
                src = Path(new["_path"])
                kept.append(str(keep_rerun(src, keep / src.parent.relative_to(runs), new_names)))
            diffs = compare(old, new)
            details[tag] = diffs
            if diffs:
                counts["differs"] += 1
                echo(f"DIFFERS {tag} (recorded on {_where(old)}; now {_where(new)}):")
                if _where(old) != _where(new):  # other kernels (CPU kind, threads) sum in another order
                    echo("    (another machine or thread count: bit for bit needs the recorded CPU kind and threads)")
                for d in diffs:
                    echo(f"    {d}")
            else:
                counts["reproduced"] += 1
                echo(f"reproduced {tag}")
    return {**counts, "details": details, "bad_records": bad, "kept": kept}
