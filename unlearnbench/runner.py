"""One run: resolve, build the task, produce shared stages, call the method, evaluate once,
record run.json. Each arrow goes one way: the method never reaches around ctx."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import progress
from .config import Resolved, check_device
from .errors import ConfigError
from .metrics import GAP_METRICS, avg_gap, sparsity, sparsity_breakdown
from .seeding import deterministic_kernels
from .selection import grid
from .store import tensor_digest

if TYPE_CHECKING:
    from .method import Result
    from .selection import Selection
    from .stages import Stages

RUN_SCHEMA = 1
# The PROTOCOL version a record's numbers follow (PROTOCOL §11); records without the key are
# protocol 1, and a board never mixes versions (unlearnbench.report.checks).
PROTOCOL_VERSION = 2


def pick_threads(requested: int, preferred: int) -> int:
    """Never more torch threads than free cores: oversubscription was measured to slow
    training by up to 100x on the 2-core box (PROTOCOL §10.1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or preferred, cores))


def gpu_scale_warning(scenario: Any, device: str) -> str | None:
    """What to tell someone about to train a GPU-scale scenario (CIFAR-10, CUB, Tiny ImageNet) on CPU."""
    if not device.startswith("cpu") or not getattr(scenario, "gpu_scale", False):
        return None
    return (f"unlearnbench: warning: {scenario.name} is a GPU-scale scenario ({scenario.title}): on CPU one model "
            "takes many hours and a trial several days. Use -o device=cuda where a GPU is available.")


def run_dir(runs_dir: Path, scenario: str, method: str, trial: int) -> Path:
    return Path(runs_dir) / scenario / method / f"seed-{trial}"


_WARNED_ORIGINS: set[tuple] = set()  # (runs dir, scenario, trial, digest): one warning per process each


def other_originals(runs_dir: Path, scenario: str, trial: int, digest: str) -> list[dict]:
    """The records already in ``runs_dir`` for (``scenario``, ``trial``) whose original had other weights than
    ``digest``: the same trial number and store key, another machine's kernels (CPU kind, threads, device)."""
    out = []
    for path in sorted(Path(runs_dir).glob(f"{scenario}/*/seed-{trial}/run.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # an unreadable record is the board's and the sweep's to report, not this check's
        theirs = (rec.get("weights_digest") or {}).get("original") if isinstance(rec, dict) else None
        if theirs and theirs != digest:
            out.append(rec)
    return out


def warn_other_originals(runs_dir: Path, scenario: str, trial: int, digest: str | None) -> str | None:
    """Say before anything else is computed that this trial's new records will not be like for like with the
    ones already beside them (the board's check would say so only afterwards); once per process per trial."""
    from .provenance import where

    tag = (str(runs_dir), scenario, trial, digest)
    if digest is None or tag in _WARNED_ORIGINS:
        return None
    others = other_originals(runs_dir, scenario, trial, digest)
    if not others:
        return None
    _WARNED_ORIGINS.add(tag)
    machines = ", ".join(sorted({where(r) for r in others}))
    return (f"warning: {scenario} trial {trial}: this machine's original has other weights ({digest[:12]}) than the "
            f"{len(others)} record(s) already in {runs_dir} for that trial (made on {machines}); the new records "
            "will not be like for like with them (other CPU kinds or thread counts sum in another order). Use "
            "another --runs-dir, or run on the machine and thread count the records name.")


def used_splits(method: Any, rule: Any, rule_cfg: Any, task: Any, selected: bool = True) -> str:
    """The union of data the method and its selection rule read (PROTOCOL §1.4); the rule's
    splits count only when a selection actually ran."""
    used = set(method.uses)
    if method.selects and selected:
        used |= set(rule.reads_for(rule_cfg, task)) - {"retrain"}
    order = ["forget", "retain", "val", "test"]
    return "+".join(s for s in order if s in used)


def diagnostic_pass(stages: "Stages", method: str, result: "Result", linear: bool = False) -> "Selection | None":
    """The selection of ``result`` with the scenario's diagnostic metrics (``Scoring.diagnostic``,
    test among them) measured at every λ of its curve, for θ_0 − λτ with τ = ``result.merged``.

    It runs in the harness after the method returned, so no test number can reach the choice of
    λ*; the method's Selection is copied, never edited. A result without a λ curve (no selection,
    or a hyperparameter search) has nothing to measure: its own selection comes back."""
    import dataclasses

    from .taskvec import InPlaceEditor

    sel = result.selection
    if sel is None or not sel.curve or not all("lambda" in p for p in sel.curve):
        return sel
    if result.merged is None:
        raise ConfigError(f"selection.diagnostic=true: method {method!r} chose λ but returned no task vector; it "
                          "must return the τ it selected λ for as Result(merged=τ)")
    task = stages.task
    model = stages.model_of(stages.original(), linear)  # ``linear``: f_lin(θ_0 − λτ) (PROTOCOL §4.8)
    editor = InPlaceEditor(model, stages.original(), result.merged)
    names = list(task.scoring.diagnostic)
    ref = stages.retrain_metrics() if task.scoring.has_oracle else None
    curve = []
    for point in sel.curve:
        editor.set(point["lambda"])
        diag = stages.evaluator.measure(model, names)
        if ref is not None and all(k in diag for k in GAP_METRICS):
            diag["avg_gap"] = avg_gap(diag, ref)[0]  # the full §8.3 Avg. Gap at this λ
        curve.append({**point, "diagnostic": diag})
    return dataclasses.replace(sel, curve=curve)


def rule_result(stages: "Stages", result: "Result", rule: Any, retr_m: dict | None, own: bool = False,
                memo: dict | None = None, outputs: "Outputs | None" = None, linear: bool = False) -> dict:
    """What the record holds for one ``selection.also`` rule (PROTOCOL §5(d)): its choice on the
    method's curve (``Selection.also``), the model there (θ_0 − λτ on a λ curve, the method's own
    ``Result.by_rule`` entry when it composes selections, the searched state at that point), its full
    §8 metrics and Avg. Gap, and the rule's ``final_report`` (selection optimism). A result the rule
    cannot choose for (no selection) is the method's result under every rule: ``selected`` false.
    ``own``: ``rule`` is the run's own rule, whose choice is the method's result. ``memo`` maps a weights
    digest to its final metrics and the logits behind them (``Evaluator.measure``'s cache): rules that choose
    the same weights (often (b) and (b''), or (b) and the run's own rule) are evaluated once, and a
    ``final_report`` forwards no split its model's metrics already forwarded. ``outputs``, when given,
    receives the per-example outputs of the rule's model (PROTOCOL §8.7.0), under the rule's name.
    ``linear``: the state is evaluated as θ_0's linearised model (``pool.linear``, PROTOCOL §4.8)."""
    from .taskvec import edited_state

    name = rule.name
    sub = None if own else result.by_rule.get(name)
    sel = (sub or result).selection
    choice = None if sel is None else ({"index": sel.index, "lambda": sel.lam, "score": sel.score} if own
                                       else sel.also.get(name))
    if choice is None:
        if sel is not None:  # a selection ran, but not one this rule could ride on
            return {"rule": name, "selected": False, "why": "this selection does not serve selection.also "
                    "(e.g. the v1 search, method.search_grid=v1)"}
        return {"rule": name, "selected": False}
    state = None
    if own:
        state = result.state
    elif sub is not None:
        state = sub.state
    elif result.merged is not None and all("lambda" in p for p in sel.curve):
        state = edited_state(stages.original(), result.merged, float(choice["lambda"]))
    elif sel.states is not None:  # a search: the weights of that point, kept in memory
        state = sel.states[int(choice["index"])]
    if state is None:
        return {"rule": name, "selected": False, "why": "the method returned no way to rebuild this rule's choice"}
    model = stages.model_of(state, linear)
    out: dict[str, Any] = {"rule": name, "selected": True, "oracle": rule.oracle,
                           **{k: v for k, v in choice.items() if k != "oracle"}}
    memo = {} if memo is None else memo
    digest = tensor_digest(state)
    if digest not in memo:
        cache: dict = {}
        memo[digest] = (stages.evaluator.measure(model, stages.evaluator.report_names(), cache), cache)
    metrics, cache = memo[digest]
    if not own:
        metrics = dict(metrics)
        out["metrics"] = metrics
        if outputs is not None:
            outputs.add(name, stages.outputs_for(state, model=model, logits=cache, linear=linear), group="by_rule")
        if retr_m is not None:
            g, comps = avg_gap(metrics, retr_m)
            out["gap"] = {"avg_gap": g, "components": comps}
        out["weights_digest"] = digest
        if sub is not None:
            out["info"] = sub.info
    if rule.final_report is not None and retr_m is not None:
        out["report"] = rule.final_report(lambda names: stages.evaluator.measure(model, list(names), cache),
                                          stages.reference)
    return out


class Outputs:
    """The record's ``outputs`` section: the store key of each final model's per-example outputs (PROTOCOL
    §8.7.0, ``ensemble.outputs``; ``by_rule``: each ``selection.also`` rule's model), the key of the labels
    they are scored against, and under ``missing`` why a key is null. A section of its own, so every field
    a record held before stays as it was."""

    def __init__(self, stages: "Stages") -> None:
        from .ensemble.outputs import OUTPUTS_VERSION, labels_key

        self.doc: dict[str, Any] = {"version": OUTPUTS_VERSION,
                                    "labels": labels_key(stages.store, stages.task.manifest_hash)}

    def add(self, name: str, got: tuple[str | None, str | None], group: str | None = None) -> None:
        key, why = got
        (self.doc.setdefault(group, {}) if group else self.doc)[name] = key
        if why is not None:
            self.doc.setdefault("missing", {})[f"{group}.{name}" if group else name] = why


def build_task(res: Resolved, trial: int, data_root: str | None, raw_cache: dict | None = None):
    """The trial's task: the data set loaded once per process (``raw_cache``), the splits drawn."""
    scen = res.scenario
    raw = raw_cache.get(scen.name) if raw_cache is not None else None
    if raw is None:
        raw = scen.load_raw(data_root)
        if raw_cache is not None:
            raw_cache[scen.name] = raw
    task = scen.build_task(res.cfg.scenario, trial, data_root, raw=raw)
    task.amp = str(res.cfg.amp)  # a suite key, not the scenario's: every stage and method trains in it
    return task


def write_record(out: Path, rec: dict) -> Path:
    """run.json, written atomically (a reader sees the old record or the new one, never half)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"run.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(rec, indent=1, default=float))
    tmp.replace(out / "run.json")
    return out / "run.json"


def run_trial(res: Resolved, trial: int, *, store, runs_dir: Path, data_root: str | None,
              raw_cache: dict | None = None, executor=None, threads: int | None = None) -> dict:
    """One (config, trial). ``executor`` and ``threads`` replace the config's (a sweep cell run as a
    job: its pool and searches run in its worker, with the worker's thread count)."""
    import torch

    from .context import Ctx
    from .provenance import provenance
    from .stages import Stages

    from .store import dir_problem

    # Where the record goes must be writable before anything computes, not found out after.
    problem = dir_problem(Path(runs_dir), "the runs dir", "pass --runs-dir a writable folder")
    if problem:
        raise ConfigError(problem)
    cfg = res.cfg
    scen, meth, rule = res.scenario, res.method, res.rule
    t_start = time.perf_counter()
    t0 = time.perf_counter()
    task = build_task(res, trial, data_root, raw_cache)
    grid(str(cfg.selection.grid), task.grids)  # a grid name only the task knows: checked before training
    if not task.scoring.has_oracle and "retain" in meth.uses:
        raise ConfigError(f"method {meth.name!r} reads D_r, which scenario {scen.name!r} does not have (it has no "
                          "retain set and no Retrain oracle). Pick a method whose used splits do not include "
                          "retain: `unlearnbench list methods` shows each method's [uses: ...]")
    threads = threads or pick_threads(int(cfg.threads), task.threads)
    torch.set_num_threads(threads)
    device = str(cfg.device)
    check_device(device)  # also checked when the config is resolved (unlearnbench.config.resolve)
    deterministic_kernels(device)
    warning = gpu_scale_warning(scen, device)
    if warning:
        import sys

        print(warning, file=sys.stderr)  # shown even with --quiet: it is not progress
    timings: dict[str, float] = {"data_s": time.perf_counter() - t0}

    from .executor import executor_for

    executor = executor if executor is not None else executor_for(cfg.executor, device)
    stages = Stages(task, store, device, executor=executor)
    stages.original()
    message = warn_other_originals(runs_dir, scen.name, trial, stages.digests.get("original"))
    if message:
        import sys

        print(message, file=sys.stderr)  # shown even with --quiet: it is not progress
    if task.scoring.has_oracle:
        stages.retrain()
    orig_m = stages.metrics_of("original")
    retr_m = stages.metrics_of("retrain") if task.scoring.has_oracle else None
    outputs = Outputs(stages)
    outputs.add("original", stages.outputs_of("original"))
    if task.scoring.has_oracle:
        outputs.add("retrain", stages.outputs_of("retrain"))

    also = res.also_for(task)
    ctx = Ctx(stages, meth, cfg.method, rule, cfg.selection, cfg.pool, also)
    t0 = time.perf_counter()
    result = meth.unlearn(ctx)
    unlearn_total = time.perf_counter() - t0
    # ctx times its own calls (a method's ctx.retrain() is a store read once the stage ran);
    # the stage's training time must win over that
    timings.update(ctx.timings)
    timings.update(stages.timings)
    timings["unlearn_s"] = unlearn_total - ctx.timings.get("pool_s", 0.0) - ctx.timings.get("select_s", 0.0) \
        - ctx.timings.get("retrain_s", 0.0)

    # Evaluate once, on the selected model (test is first read here).
    t0 = time.perf_counter()
    linear = bool(cfg.pool.linear)  # an edit of the linear pool is evaluated as f_lin (PROTOCOL §4.8)
    model = stages.model_of(result.state, linear, method=meth.name)
    own_logits: dict = {}
    metrics = stages.evaluator.measure(model, stages.evaluator.report_names(), own_logits)
    # what rule_result reuses when another rule chose these same weights (PROTOCOL §5(d) rows)
    memo = {tensor_digest(result.state): (metrics, own_logits)}
    timings["eval_s"] = time.perf_counter() - t0
    outputs.add("unlearned", stages.outputs_for(result.state, model=model, logits=own_logits,  # no new forward
                                                linear=linear))
    pool_points = stages.member_points(result.diagnostics, linear) if result.diagnostics else None
    sel = result.selection
    info = {**ctx.info, **result.info}
    if cfg.selection.diagnostic:  # PROTOCOL §5: test at every λ, now that λ* is fixed; never on a board
        t0 = time.perf_counter()
        sel = diagnostic_pass(stages, meth.name, result, linear)
        if sel is not result.selection:
            info["diagnostic"] = True  # what keeps the record off every leaderboard
            timings["diagnostic_s"] = time.perf_counter() - t0
    gap = None
    if retr_m is not None:
        g, comps = avg_gap(metrics, retr_m)
        gap = {"avg_gap": g, "components": comps}
    t0 = time.perf_counter()
    by_rule = {r.name: rule_result(stages, result, r, retr_m, memo=memo, outputs=outputs, linear=linear)
               for r, _ in also}
    rule_report = (rule_result(stages, result, rule, retr_m, own=True, memo=memo, linear=linear).get("report")
                   if rule.final_report else None)
    if also:
        timings["by_rule_s"] = time.perf_counter() - t0
    rec: dict[str, Any] = {
        "schema": RUN_SCHEMA,
        "protocol": PROTOCOL_VERSION,
        "scenario": scen.name,
        "method": meth.name,
        "variant": list(res.variant),
        "trial": trial,
        "config": res.to_dict(),
        "config_hash": res.hash,
        "manifest_hash": task.manifest_hash,
        # split sizes: the board's character check weighs Acc D_r and Acc D_f into Acc D_train (§2.1)
        "split_sizes": dict(task.manifest.get("sizes") or {}),
        "used_splits": used_splits(meth, rule, cfg.selection, task, result.selection is not None),
        "selection": sel.summary() if sel is not None else None,
        "selection_rule": (sel.rule if sel is not None else None),
        "oracle": bool(sel is not None and sel.oracle) or meth.oracle,
        "lambda": result.lam,
        "scoring": task.scoring.record(),  # how the report maps these metrics onto the board
        "metrics": metrics,
        "original": orig_m,
        "retrain": retr_m,
        "gap": gap,
        # selection.also: each other rule's choice on the same curves, evaluated in full (PROTOCOL §5(d))
        "by_rule": by_rule or None,
        "rule_report": rule_report,
        "sparsity": ({**sparsity(result.merged, [k for k in stages.param_keys if k not in task.frozen]),
                      **sparsity_breakdown(result.merged, task.new_model())} if result.merged is not None else None),
        "info": info,
        "pool_points": pool_points,
        "timings": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in timings.items()},
        "artifacts": dict(stages.keys),
        # per-example outputs of every final model (PROTOCOL §8.7.0): what the ensemble metrics read
        "outputs": outputs.doc,
        # what the weights were, not only how they were made: the leaderboard checks that every
        # record of one trial unlearned the same original (unlearnbench.report.consistency),
        # and a rerun can check it got the same unlearned model
        "weights_digest": {**{k: v for k, v in stages.digests.items() if k in ("init", "original", "retrain")},
                           "unlearned": tensor_digest(result.state)},
        "trained_now": stages.trained,
        "provenance": {**provenance(device, threads), "executor": executor.describe()},
    }
    rec["timings"]["total_s"] = round(time.perf_counter() - t_start, 4)
    path = write_record(run_dir(runs_dir, scen.name, res.run_name, trial), rec)
    rec["_path"] = str(path)
    progress.say(f"wrote {path}")
    return rec


def recorded(runs_dir: Path, res: Resolved, trial: int, *, strict: bool = False, warn=None) -> bool:
    """A run of this exact config (hash) and trial is already on disk.

    A record there that cannot be read (torn, ``{}``, a list, not UTF-8, a key missing: see
    ``report.records``) is not a result: the cell runs again (``warn`` is told, with the file and what
    is wrong), or with ``strict`` RecordError is raised."""
    from .report.records import STRICT_NOTE, RecordError, read_record

    p = run_dir(runs_dir, res.scenario.name, res.run_name, trial) / "run.json"
    if not p.exists():
        return False
    try:
        rec = read_record(p)
    except RecordError as e:
        if strict:
            raise RecordError(f"{e} {STRICT_NOTE}") from None
        if warn is not None:
            warn(f"warning: {e}; running this cell again (its record is replaced)")
        return False
    return rec.get("config_hash") == res.hash and rec.get("trial") == trial


def sweep_grid(resolved: list[Resolved], seeds: list[int] | None, *, store, runs_dir: Path,
               data_root: str | None, echo=print, strict: bool = False) -> dict:
    """Every (config, trial); already recorded ones are skipped, so an interrupted sweep resumes.
    Scenarios are the outer loop so each data set is loaded once.

    Every cell's record is read before anything runs, so a bad one is reported first (``strict``: as
    one error, nothing run). One cell's error, whatever it is (a method raising ValueError, torch
    refusing a device), must not end the grid: the cell is reported FAILED with its error and the rest
    run. Only KeyboardInterrupt (and SystemExit) stop the sweep."""
    from .errors import UnlearnbenchError

    counts = {"ran": 0, "skipped": 0, "failed": 0}
    raw_cache: dict = {}
    order = sorted(range(len(resolved)), key=lambda i: resolved[i].scenario.name)
    plan = []
    for i in order:
        res = resolved[i]
        for trial in (seeds if seeds is not None else list(res.cfg.seeds)):
            if recorded(runs_dir, res, trial, strict=strict, warn=echo):
                counts["skipped"] += 1
            else:
                plan.append((res, trial))
    from .executor import executor_for

    if plan and str(plan[0][0].cfg.executor.name) != "local":
        # every cell shares the sweep's executor section (-o executor=... applies to the whole grid)
        from .cells import sweep_cells

        ex = executor_for(plan[0][0].cfg.executor, str(plan[0][0].cfg.device))
        ran = sweep_cells(plan, store=store, runs_dir=runs_dir, data_root=data_root, executor=ex, echo=echo)
        return {**counts, "ran": ran["ran"], "failed": ran["failed"]}
    for res, trial in plan:
        tag = f"{res.scenario.name} / {res.method.name} / seed {trial}"
        try:
            rec = run_trial(res, int(trial), store=store, runs_dir=runs_dir, data_root=data_root,
                            raw_cache=raw_cache)
        except UnlearnbenchError as e:  # one bad cell must not sink the grid; it is reported
            counts["failed"] += 1
            echo(f"FAILED {tag}: {e}")
            continue
        except Exception as e:  # a plugin's own error (not KeyboardInterrupt: BaseException stops the sweep)
            counts["failed"] += 1
            echo(f"FAILED {tag}: {type(e).__name__}: {e}")
            continue
        counts["ran"] += 1
        gap = rec["gap"]["avg_gap"] if rec.get("gap") else float("nan")
        echo(f"done {tag}: Avg. Gap {gap:.2f}, {rec['timings']['total_s']:.1f}s")
    return counts
