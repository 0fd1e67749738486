"""Sweep cells as executor jobs (DESIGN.md, "Executors").

With ``-o executor=processes|ray`` a sweep runs in two waves, the driver writing everything:

1. the shared stages of every (scenario, trial) the plan needs: the original and the Retrain oracle
   (independent jobs), their metrics, and the pool members of every cell whose method reads the pool
   (``Method.uses_pool``), each member a job, only what the store lacks;
2. the cells, one job each. A cell job receives the stored artifacts its trial has (as the store's own
   files: bytes, checked against their sidecars on every read), runs the ordinary ``run_trial`` in a
   scratch store of its own, and returns its record and whatever it stored that was not sent; the driver
   writes those artifacts into the store and the record into the runs folder, each atomically, as each
   cell finishes. A worker never sees the driver's store or runs folder, nor its working directory.

The records are the ones a local sweep writes, bit for bit (weights digests, metrics, curves), but for
what says how they ran: timings, ``trained_now`` (wave 1 trained the shared stages) and
``provenance.executor``.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import UnlearnbenchError


def _files_of(store, entries: list[tuple[str, str, bool]]) -> dict[str, bytes]:
    """The store's files of ``entries`` (kind, key, is_json), as {relative path: bytes}."""
    out: dict[str, bytes] = {}
    for kind, key, is_json in entries:
        paths = [store._json_path(kind, key)] if is_json else list(store._paths(kind, key))
        for p in paths:
            if p.exists():
                out[str(p.relative_to(store.root))] = p.read_bytes()
    return out


def _write_files(root: Path, files: dict[str, bytes], *, skip_existing: bool) -> None:
    # data before sidecar: a sidecar is a stored artifact's commit marker (unlearnbench.store)
    for rel in sorted(files, key=lambda r: (r.endswith(".json"), r)):
        p = root / rel
        if skip_existing and p.exists():
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".{os.getpid()}.part")
        tmp.write_bytes(files[rel])
        tmp.replace(p)


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.name.endswith((".lock", ".part", ".tmp"))}


def run_cell(res: Any, trial: int, data_root: str | None, files: dict[str, bytes], threads: int) -> tuple[dict, dict]:
    """In a worker: one cell, run by ``run_trial`` in a scratch store seeded with ``files``; returns
    (its record, the store files it made)."""
    from .executor import LocalExecutor
    from .runner import run_trial
    from .store import Store

    with tempfile.TemporaryDirectory(prefix="unlearnbench-cell-") as tmp:
        root = Path(tmp) / "store"
        _write_files(root, files, skip_existing=False)
        rec = run_trial(res, trial, store=Store(root), runs_dir=Path(tmp) / "runs", data_root=data_root,
                        executor=LocalExecutor(stack=int(res.cfg.executor.stack)), threads=threads)
        made = {rel: b for rel, b in _all_files(root).items() if rel not in files}
    rec.pop("_path", None)
    return rec, made


def prepare_trial(res: Any, trial: int, store, data_root: str | None, executor, raw_cache: dict,
                  pools: set[tuple]) -> list[tuple[str, str, bool]]:
    """Wave 1 for one (scenario, trial): the shared stages, through ``executor``; returns the store
    entries a cell of this trial is sent."""
    from .runner import build_task
    from .stages import Stages

    task = build_task(res, trial, data_root, raw_cache)
    stages = Stages(task, store, str(res.cfg.device), executor=executor)
    stages.train_shared()
    entries = [("manifest", task.manifest_hash, True)]
    entries += [(k, stages.keys[k], False) for k in ("init", "original", "retrain") if k in stages.keys]
    for kind in ("original", "retrain") if task.scoring.has_oracle else ("original",):
        entries.append(("metrics", stages.metrics_key(kind), True))
        stages.metrics_of(kind)
        key, _ = stages.outputs_of(kind)  # PROTOCOL §8.7.0: computed once, not in every cell
        if key is not None:
            entries.append(("outputs", key, False))
    from .ensemble.outputs import LABELS_KIND, labels_key

    labels = labels_key(store, task.manifest_hash)
    if store.has(LABELS_KIND, labels):
        entries.append((LABELS_KIND, labels, False))
    timings: dict = {}
    for name, size, subset, augment, linear in sorted(pools):
        for member, _ in stages.pool_stream(name, size, timings, subset=subset, augment=augment, linear=linear):
            entries.append(("pool", member["key"], False))
    return entries


def sweep_cells(plan: list[tuple[Any, int]], *, store, runs_dir: Path, data_root: str | None, executor,
                echo=print) -> dict:
    """Run ``plan`` (its cells not yet recorded) on ``executor``; see the module docstring."""
    from .executor import Job
    from .runner import run_dir, write_record

    counts = {"ran": 0, "skipped": 0, "failed": 0}
    raw_cache: dict = {}
    groups: dict[tuple[str, int], list[Any]] = {}
    for res, trial in plan:
        groups.setdefault((res.scenario.name, int(trial)), []).append(res)
    sent: dict[tuple[str, int], dict[str, bytes]] = {}
    for (scen, trial), cells in groups.items():
        pools = {(str(r.cfg.pool.name), int(r.cfg.pool.size), str(r.cfg.pool.subset), str(r.cfg.pool.augment),
                  bool(r.cfg.pool.linear)) for r in cells if getattr(r.method, "uses_pool", False)}
        try:
            entries = prepare_trial(cells[0], trial, store, data_root, executor, raw_cache, pools)
        except UnlearnbenchError as e:  # the trial's shared stages failed: its cells cannot run; the rest go on
            for r in cells:
                counts["failed"] += 1
                echo(f"FAILED {scen} / {r.method.name} / seed {trial}: {e}")
            plan = [(r, t) for r, t in plan if (r.scenario.name, int(t)) != (scen, trial)]
            continue
        sent[(scen, trial)] = _files_of(store, entries)
    threads = executor.threads or 1
    jobs = [Job(f"{res.scenario.name}/{res.run_name}/seed-{trial}", run_cell,
                (res, int(trial), data_root, sent[(res.scenario.name, int(trial))], threads),
                label=f"{res.scenario.name} / {res.method.name} / seed {trial}")
            for res, trial in plan]
    by_key = {j.key: (res, int(trial)) for j, (res, trial) in zip(jobs, plan)}

    def done(o):
        res, trial = by_key[o.job.key]
        if not o.ok:
            counts["failed"] += 1
            echo(f"FAILED {o.job.label}: {o.error} (after {o.attempts} attempts)")
            return
        rec, made = o.value
        _write_files(store.root, made, skip_existing=True)  # content-addressed: an existing file is the same
        rec["provenance"]["executor"] = {**executor.describe(), "job": "cell", "worker_s": round(o.worker_s, 4)}
        path = write_record(run_dir(runs_dir, res.scenario.name, res.run_name, trial), rec)
        counts["ran"] += 1
        gap = rec["gap"]["avg_gap"] if rec.get("gap") else float("nan")
        echo(f"done {o.job.label}: Avg. Gap {gap:.2f}, {rec['timings']['total_s']:.1f}s -> {path}")

    t0 = time.perf_counter()
    executor.run(jobs, desc=f"sweep ({executor.name})", on_done=done, unit="cell")
    counts["seconds"] = round(time.perf_counter() - t0, 2)
    return counts
