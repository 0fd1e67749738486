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

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import ConfigError
from .provenance import where

SECTIONS = ("metrics", "original", "retrain")


def find_records(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += sorted(p.rglob("run.json"))
        else:
            raise ConfigError(f"{p} is neither a run.json nor a folder of runs")
    return out


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
              data_root: str | None = None, echo: Callable[[str], None] = print) -> dict:
    """Rerun every record; returns counts and, per record, its differences (or why it was skipped).

    ``store_root`` None: a fresh temporary store, so nothing stored earlier (perhaps by older code)
    is reused. ``out_dir``: where the reruns' records go (default: a temporary folder).
    """
    import torch

    from .config import resolve
    from .runner import run_trial
    from .store import Store

    counts = {"reproduced": 0, "differs": 0, "skipped": 0}
    details: dict[str, list[str]] = {}
    raw_cache: dict = {}
    with tempfile.TemporaryDirectory(prefix="unlearnbench-reproduce-") as tmp:
        store = Store(store_root or Path(tmp) / "store")
        runs = Path(out_dir) if out_dir else Path(tmp) / "runs"
        for path in records:
            old = json.loads(path.read_text())
            tag = f"{old['scenario']} / {path.parent.parent.name} / seed {old['trial']}"
            res = resolve(host, file_layer=old["config"], device_here=False)  # no GPU here: skipped below
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
            diffs = compare(old, new)
            details[tag] = diffs
            if diffs:
                counts["differs"] += 1
                echo(f"DIFFERS {tag} (recorded on {_where(old)}; now {_where(new)}):")
                for d in diffs:
                    echo(f"    {d}")
            else:
                counts["reproduced"] += 1
                echo(f"reproduced {tag}")
    return {**counts, "details": details}
