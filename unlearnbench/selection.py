"""Selection: grids, the λ sweep, the hyperparameter search, and the base of every selection
rule (PROTOCOL §5, §7.3).

A rule maps a λ-curve of selection metrics to λ* and a score. It declares the splits it
reads; the harness computes only metrics on those splits, so a rule that does not say it
is an oracle can never see test data or the retrain model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import ConfigError, SplitAccessError, StoreError

GRIDS = {
    "classifier": [round(0.05 * i, 2) for i in range(41)],  # {0, 0.05, ..., 2.00} [PROTOCOL §5, OURS]
    "unit": [round(0.05 * i, 2) for i in range(21)],  # {0, ..., 1}: the third parties' grid
}

ORACLE_READS = frozenset({"test", "retrain"})


def grid(name: str, extra: Mapping[str, list[float]] | None = None) -> list[float]:
    """The λ grid ``selection.grid`` names: the suite's, a scenario's own (``Task.grids``), or an
    explicit ``start:stop:step`` (inclusive; a finite start <= stop and a step > 0)."""
    import math

    table = {**GRIDS, **(extra or {})}
    if name in table:
        return list(table[name])
    fix = "e.g. -o selection.grid=0:2:0.05 (start:stop:step, inclusive) or -o selection.grid=classifier"
    parts = str(name).split(":")
    if len(parts) != 3:
        raise ConfigError(f"unknown lambda grid {name!r}: use {', '.join(table)} or start:stop:step, {fix}")
    try:
        a, b, s = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"lambda grid {name!r}: start, stop and step must be numbers, {fix}") from None
    if not all(math.isfinite(v) for v in (a, b, s)):
        raise ConfigError(f"lambda grid {name!r}: start, stop and step must be finite numbers, {fix}")
    if s <= 0:
        raise ConfigError(f"lambda grid {name!r}: the step must be > 0, not {s:g}, {fix}")
    if b < a:
        raise ConfigError(f"lambda grid {name!r}: stop {b:g} is below start {a:g}, so the grid is empty, {fix}")
    n = int(round((b - a) / s))
    if n > 100_000:
        raise ConfigError(f"lambda grid {name!r} has {n + 1} points; give a coarser step, {fix}")
    return [round(a + i * s, 10) for i in range(n + 1)]


class SelectionRule:
    """Base of every selection rule plugin."""

    name: str = ""
    description: str = ""
    Config: type | None = None
    oracle: bool = False  # reads the retrain oracle and/or test: tagged wherever it appears
    reads: frozenset[str] = frozenset()  # splits (and "retrain") the rule's metrics come from

    def reads_for(self, cfg: Any, task: Any) -> frozenset[str]:
        return self.reads

    def needs(self, cfg: Any, task: Any) -> list[str]:
        """Metric names evaluated at each λ (see ``Evaluator.metric_splits``)."""
        raise NotImplementedError

    def choose(self, curve: list[dict], cfg: Any, task: Any, reference: dict | None,
               baseline: dict | None = None) -> tuple[int, float]:
        """Index into ``curve`` of the chosen point, and its score (lower is better).

        ``baseline`` holds the metrics of θ_0 (no unlearning); for a λ sweep it is ``curve[0]``
        (λ = 0) when the grid starts at 0 and is measured at λ = 0 otherwise, for a hyperparameter
        search it is measured separately."""
        raise NotImplementedError

    def feasible(self, curve: list[dict], cfg: Any, task: Any, baseline: dict | None = None) -> list[bool]:
        """Which points satisfy the rule's constraint (default: all)."""
        return [True] * len(curve)

    def can_stop(self, curve: list[dict], cfg: Any, task: Any, baseline: dict | None = None) -> bool:
        """True once no later λ can be chosen (early stop); the default sweeps the whole grid.
        ``baseline`` is θ_0's metrics, as for ``feasible``."""
        return False

    def validate_definition(self) -> None:
        if not self.reads:
            raise ValueError("a selection rule must declare the splits it reads")
        if not self.oracle and self.reads & ORACLE_READS:
            raise ValueError(f"reads {sorted(self.reads & ORACLE_READS)} but is not declared oracle=True")


@dataclass
class Selection:
    rule: str
    oracle: bool
    lam: float
    score: float
    index: int
    curve: list[dict]
    evals: int
    seconds: float
    grid_edge: bool
    params: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"rule": self.rule, "oracle": self.oracle, "lambda": self.lam, "score": self.score,
                "evals": self.evals, "seconds": self.seconds, "grid_edge": self.grid_edge,
                "params": self.params, "curve": self.curve}


def check_reads(rule: SelectionRule, cfg: Any, task: Any, allowed: frozenset[str],
                metric_splits: Callable[[str], frozenset[str]]) -> list[str]:
    """The metrics ``rule`` needs, once each is known to read only ``allowed`` splits: the one
    leak check of both searches (a rule that does not say it is an oracle never sees test)."""
    needs = rule.needs(cfg, task)
    for m in needs:
        leak = metric_splits(m) - allowed
        if leak:
            raise SplitAccessError(
                f"selection rule {rule.name!r} asks for {m!r}, which reads {sorted(leak)}; it declares only "
                f"{sorted(allowed)}"
            )
    return needs


def sweep(
    set_lambda: Callable[[float], None],
    measure: Callable[[list[str]], dict],
    lambdas: list[float],
    rule: SelectionRule,
    cfg: Any,
    task: Any,
    reference: dict | None,
    allowed: frozenset[str],
    metric_splits: Callable[[str], frozenset[str]],
) -> Selection:
    """Evaluate each λ on the rule's splits only, in grid order, with weights set in place.

    The rule compares against θ_0 (λ = 0): ``curve[0]`` itself when the grid starts at 0 (every
    named grid does), else θ_0 measured once before the grid, so a grid such as ``1.5:2:0.05``
    keeps the κ floor of θ_0, not of its first point (that baseline goes into ``params``)."""
    import inspect

    needs = check_reads(rule, cfg, task, allowed, metric_splits)
    from . import progress

    if not lambdas:
        raise ConfigError("the lambda grid is empty: give at least one λ, e.g. -o selection.grid=0:2:0.05")
    t0 = time.perf_counter()
    baseline: dict | None = None
    params: dict = {}
    if lambdas[0] != 0:
        set_lambda(0.0)
        baseline = {"lambda": 0.0, **measure(needs)}
        params["baseline"] = baseline
    stop_takes_baseline = "baseline" in inspect.signature(rule.can_stop).parameters
    curve: list[dict] = []
    with progress.bar(len(lambdas), f"select λ ({rule.name})", unit="λ") as pbar:
        for lam in lambdas:
            set_lambda(lam)
            curve.append({"lambda": lam, **measure(needs)})
            if baseline is None:
                baseline = curve[0]  # λ = 0: the same dict the rules read as curve[0]
            pbar.update(1)
            if (rule.can_stop(curve, cfg, task, baseline) if stop_takes_baseline
                    else rule.can_stop(curve, cfg, task)):
                break
    idx, score = rule.choose(curve, cfg, task, reference, baseline)
    lam = curve[idx]["lambda"]
    return Selection(rule=rule.name, oracle=rule.oracle, lam=lam, score=float(score), index=idx, curve=curve,
                     evals=len(curve) + ("baseline" in params), seconds=time.perf_counter() - t0,
                     grid_edge=lam == max(lambdas), params=params)


def search(
    candidates: list[dict],
    build: Callable[[dict], dict],
    load: Callable[[dict], object],
    measure: Callable[[list[str]], dict],
    rule: SelectionRule,
    cfg: Any,
    task: Any,
    reference: dict | None,
    allowed: frozenset[str],
    metric_splits: Callable[[str], frozenset[str]],
    build_all: Callable[[list[dict]], list] | None = None,
) -> tuple[dict, Selection]:
    """Choose a hyperparameter setting with ``rule`` (PROTOCOL §7.3); returns its state and the Selection.

    ``build(candidate)`` returns the unlearned state dict of one setting (it trains); ``load(state)``
    puts a state in the model ``measure(names)`` scores, which holds θ_0 on entry: θ_0 is the
    baseline the rule compares against. Each setting is measured on the rule's splits only. A
    setting whose weights diverged (non-finite) is recorded, never scored, as a non-finite pool
    member is (§3). The grid, every candidate's metrics and the choice go into ``params``.

    ``build_all(candidates)``, when given, builds every setting at once (an executor runs them in
    parallel) and returns, per candidate, its state or a ``BuildFailed`` (it failed twice); such a
    setting is recorded with its error and never scored, and the others are still compared."""
    import torch

    needs = check_reads(rule, cfg, task, allowed, metric_splits)
    t0 = time.perf_counter()
    baseline = measure(needs)
    built = build_all([dict(c) for c in candidates]) if build_all is not None else None
    curve: list[dict] = []
    states: list[dict | None] = []
    valid: list[int] = []  # positions in curve of the scored (finite) settings
    failed: list[str] = []
    for j, cand in enumerate(candidates):
        state = build(dict(cand)) if built is None else built[j]
        if isinstance(state, BuildFailed):
            curve.append({**cand, "failed": state.error})
            failed.append(f"{cand}: {state.error}")
            states.append(None)
            continue
        if all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
            load(state)
            curve.append({**cand, **measure(needs)})
            valid.append(len(states))
        else:
            curve.append({**cand, "non_finite": True})
        states.append(state)
    if not valid:
        if failed:
            raise StoreError(f"no setting of the search could be scored; {len(failed)} failed twice: " + "; ".join(failed))
        raise StoreError(f"every setting of the search diverged (non-finite weights): {candidates}")
    scored = [curve[i] for i in valid]
    j, score = rule.choose(scored, cfg, task, reference, baseline)
    idx = valid[j]
    feasible = [False] * len(curve)  # a diverged or failed setting is never feasible
    for i, ok in zip(valid, rule.feasible(scored, cfg, task, baseline)):
        feasible[i] = ok
    sel = Selection(rule=rule.name, oracle=rule.oracle, lam=float("nan"), score=float(score), index=idx,
                    curve=curve, evals=len(curve), seconds=time.perf_counter() - t0,
                    grid_edge=len(candidates) > 1 and idx in (0, len(candidates) - 1),
                    params={"grid": candidates, "chosen": candidates[idx], "baseline": baseline,
                            "feasible": feasible, "none_feasible": not any(feasible)})
    state = states[idx]
    assert state is not None
    return state, sel


@dataclass
class BuildFailed:
    """A search setting whose build failed on every attempt (an executor's retry included)."""

    error: str
