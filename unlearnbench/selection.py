"""Selection: grids, the λ sweep, the hyperparameter search, and the base of every selection
rule (PROTOCOL §5, §7.3).

A rule maps a λ-curve of selection metrics to λ* and a score. It declares the splits it
reads; the harness computes only metrics on those splits, so a rule that does not say it
is an oracle can never see test data or the retrain model.
"""
from __future__ import annotations

import math
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
    # False: ``feasible`` and ``choose`` may be given the evaluated part of the grid (in λ order) by a
    # strategy that skips λs (``selection.strategy`` frontier or halving; ``_halving`` says what curve
    # shape they assume). True: the rule's choice needs every λ, so every strategy gives it the grid.
    grid_only: bool = False

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

    def extends_grid(self, cfg: Any) -> bool:
        """Whether a choice at the grid's last, feasible λ continues the sweep with the same step up to
        twice the grid's end, once (PROTOCOL §5(c) v2); the v1 rules and the CLIP rule do not."""
        return False

    def stages(self, cfg: Any, task: Any) -> "list[list[str]] | None":
        """Optional, for an exact speed-up: ``needs`` cut into groups measured in this order, for a rule that
        chooses the least ``point_score`` over every point, all feasible (the oracle rules). Used when the
        rule is one of ``selection.also``: after each group a point whose ``lower_bound`` already exceeds the
        rule's best score so far cannot be its choice, and its remaining groups are not measured for it
        (``_Pruner``). None (the default): the rule's metrics are measured whole at every point."""
        return None

    def lower_bound(self, point: dict, cfg: Any, reference: dict | None) -> float:
        """A lower bound on ``point_score`` from the metrics ``point`` holds so far (see ``stages``)."""
        return -math.inf

    def point_score(self, point: dict, cfg: Any, reference: dict | None) -> float:
        """The score ``choose`` minimises, of one fully measured point (see ``stages``)."""
        raise NotImplementedError

    # Optional: ``final_report(measure, reference) -> dict``, what the record adds at this rule's choice
    # (``measure(names)`` scores the chosen model, ``reference(names)`` Retrain): see OracleSplitTest.
    final_report: Callable | None = None

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
    # selection.also: each other rule's choice on the same curve, {rule: {"index", "lambda", "score",
    # "oracle", "grid_extended", "grid_edge"}}. A method that composes several selections (Task
    # Arithmetic's best member) reads these scores only to compose each rule's own result (Result.by_rule)
    also: dict = field(default_factory=dict)
    # per point of ``curve``, the metrics only the ``also`` rules declared: kept off ``curve`` (which
    # holds what the method's own rule saw) and merged back into the record by ``summary``
    _also_curve: list = field(default_factory=list, repr=False)
    # A search's state per curve point (None: failed or diverged), for choosing again from the same
    # curve; in memory only, never in ``summary()`` or a record.
    states: list | None = field(default=None, repr=False, compare=False)

    def summary(self) -> dict:
        curve = ([{**p, **q} for p, q in zip(self.curve, self._also_curve)] if self._also_curve else self.curve)
        out = {"rule": self.rule, "oracle": self.oracle, "lambda": self.lam, "score": self.score,
               "evals": self.evals, "seconds": self.seconds, "grid_edge": self.grid_edge,
               "params": self.params, "curve": curve}
        if self.also:
            out["also"] = self.also
        return out


@dataclass
class RuleUse:
    """A rule of ``selection.also``: it chooses on the curve the run's own rule was measured on, seeing
    only the metrics it declared (``view``), against ``reference`` (Retrain on its metrics)."""

    rule: "SelectionRule"
    cfg: Any
    reference: dict | None
    allowed: frozenset[str]


def view(points: list[dict], hide: set[str] | frozenset[str]) -> list[dict]:
    """``points`` without the metrics in ``hide``: what one rule of a shared curve may see."""
    if not hide:
        return points
    return [{k: v for k, v in p.items() if k not in hide} for p in points]


def union(lists: list[list[str]]) -> list[str]:
    out: list[str] = []
    for names in lists:
        out += [n for n in names if n not in out]
    return out


PRUNED = "pruned"  # a point's key: the rules whose remaining metrics were not measured there (``_Pruner``)
PRUNE_EPS = 1e-9  # a bound must exceed the best score by more than float rounding of a 4-term mean


class _Pruner:
    """Measures a point of a shared curve: the run's own rule's metrics (and every rule's without
    ``stages``) always, and each staged ``also`` rule's metrics group by group, stopping for that rule
    as soon as its ``lower_bound`` exceeds the least score it has seen on a fully measured point.

    Exact: such a point scores strictly more than an earlier one, and these rules choose the least score
    with ties to the earlier point, so every rule's choice is the one the fully measured curve gives.
    The point records the rules it was pruned for (``pruned``); those rules choose among the others.
    It matters for Task Arithmetic single best, whose oracle rules would otherwise take the full §5(d)
    metrics (Acc D_test, two SVC MIAs) at all 1,107 points: most points are ruled out by Acc D_f alone."""

    def __init__(self, uses: "list[RuleUse]", needs_of: list[list[str]], task: Any,
                 measure: Callable[..., dict]):
        self.uses, self.measure = uses, measure
        self.staged = {k: st for k in range(1, len(uses)) if (st := uses[k].rule.stages(uses[k].cfg, task))}
        for k, st in self.staged.items():
            if sorted(union(st)) != sorted(needs_of[k]):
                raise ValueError(f"rule {uses[k].rule.name!r}: stages() {st} do not cover needs() {needs_of[k]}")
        self.always = union([n for k, n in enumerate(needs_of) if k not in self.staged])
        self.best = {k: math.inf for k in self.staged}
        import inspect

        try:
            self.cached = "cache" in inspect.signature(measure).parameters
        except (TypeError, ValueError):
            self.cached = False

    def seed(self, point: dict) -> None:
        """A fully measured point outside ``__call__`` (a search's θ_0) also sets the bests."""
        for k in self.staged:
            u = self.uses[k]
            self.best[k] = min(self.best[k], u.rule.point_score(point, u.cfg, u.reference))

    def __call__(self) -> dict:
        cache: dict = {}

        def m(names: list[str]) -> dict:
            return self.measure(names, cache=cache) if self.cached else self.measure(names)

        point = m(self.always)
        alive, pruned = list(self.staged), []
        for g in range(max((len(st) for st in self.staged.values()), default=0)):
            for k in list(alive):
                u = self.uses[k]
                if u.rule.lower_bound(point, u.cfg, u.reference) > self.best[k] + PRUNE_EPS:
                    alive.remove(k)
                    pruned.append(u.rule.name)
            todo = [n for n in union([self.staged[k][g] for k in alive if g < len(self.staged[k])]) if n not in point]
            if todo:
                point.update(m(todo))
        for k in alive:
            u = self.uses[k]
            self.best[k] = min(self.best[k], u.rule.point_score(point, u.cfg, u.reference))
        if pruned:
            point[PRUNED] = sorted(pruned)
        return point


def _unpruned(points: list[dict], rule: "SelectionRule") -> list[int]:
    """Indices of the points measured in full for ``rule`` (see ``_Pruner``)."""
    return [i for i, p in enumerate(points) if rule.name not in p.get(PRUNED, ())]


def extension(lambdas: list[float]) -> list[float]:
    """The λs of a grid extension (PROTOCOL §5(c) v2): past the grid's end with its last step, up to
    twice its end (classifier: 2.05, ..., 4.0). Empty for a grid that cannot be extended."""
    pts = sorted(set(lambdas))
    if len(pts) < 2 or pts[-1] <= 0:
        return []
    top, step = pts[-1], round(pts[-1] - pts[-2], 10)
    n = int(round(top / step))
    return [round(top + i * step, 10) for i in range(1, n + 1) if top + i * step <= 2 * top + 1e-9]


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


# selection.strategy: how a λ sweep visits the grid. grid: every λ; frontier: every λ up to the
# first infeasible one; halving: a coarse pass, then halving steps around the choice (see _halving)
STRATEGIES = ("grid", "frontier", "halving")
COARSE_STEP = 8  # halving's coarse pass: every 8th λ, then steps of 4, 2, 1


def _takes_baseline(fn: Callable) -> bool:
    import inspect

    return "baseline" in inspect.signature(fn).parameters  # rules written before θ_0 was passed


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
    strategy: str = "grid",
    also: "list[RuleUse] | tuple" = (),
) -> Selection:
    """Evaluate λs of the grid on the rule's splits only, with weights set in place, and choose.

    ``strategy`` (``selection.strategy``) is how the grid is visited: ``grid`` evaluates every λ
    in grid order (the rule's ``can_stop`` may end it early); ``frontier`` every λ in order up to
    the first infeasible one (the full grid's λ* whenever the feasible λs are a prefix of the grid);
    ``halving`` a subset (the full grid's λ* on well-behaved curves, see ``_halving``). A rule with
    ``grid_only`` always gets ``grid``. The curve holds the evaluated points only, in λ order.

    ``also`` (``selection.also``): more rules that choose on the same curve. Each point is measured
    on the union of every rule's metrics, once, and each rule chooses from the points with only the
    metrics it declared visible, so the run's own choice is the one it makes alone; the others land
    in ``Selection.also``. They need every λ, so with ``also`` the grid is visited whole.

    A rule whose choice is the last λ of the grid, feasible, and which ``extends_grid``, continues
    the sweep once with the same step to twice the grid's end (PROTOCOL §5(c) v2): the points are
    measured once for every rule that asks, and a rule that did not ask chooses on the grid alone.

    The rule compares against θ_0 (λ = 0): ``curve[0]`` itself when the grid starts at 0 (every
    named grid does), else θ_0 measured once before the grid, so a grid such as ``1.5:2:0.05``
    keeps the κ floor of θ_0, not of its first point (that baseline goes into ``params``)."""
    own = check_reads(rule, cfg, task, allowed, metric_splits)
    uses = [RuleUse(rule, cfg, reference, allowed)] + list(also)
    needs_of = [own] + [check_reads(u.rule, u.cfg, task, u.allowed, metric_splits) for u in also]
    needs = union(needs_of)
    pruner = _Pruner(uses, needs_of, task, measure)
    hides = [set(needs) - set(n) | ({PRUNED} if pruner.staged else set()) for n in needs_of]
    from . import progress

    if not lambdas:
        raise ConfigError("the lambda grid is empty: give at least one λ, e.g. -o selection.grid=0:2:0.05")
    strategy = str(strategy)
    if strategy not in STRATEGIES:
        raise ConfigError(f"selection.strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    used = "grid" if (getattr(rule, "grid_only", False) or also) else strategy
    t0 = time.perf_counter()
    baseline: dict | None = None
    params: dict = {}
    points = lambdas if used == "grid" else sorted(set(lambdas))  # halving walks the grid in λ order
    if strategy != "grid":
        params["strategy"] = used  # what ran: ``grid`` where the rule opts out (``grid_only``) or ``also`` is set
    if points[0] != 0:
        set_lambda(0.0)
        baseline = {"lambda": 0.0, **measure(needs)}
        params["baseline"] = view([baseline], hides[0])[0]
    evals = int(baseline is not None)

    bar = None  # the progress bar the current pass ticks, one tick per evaluated λ

    def probe(lam: float) -> dict:
        nonlocal evals
        set_lambda(lam)
        evals += 1
        point = {"lambda": lam, **(pruner() if pruner.staged else measure(needs))}
        if bar is not None:
            bar.update(1)
        return point

    def choose(k: int, pts: list[dict]) -> tuple[int, float, bool]:
        """Rule k's (index, score, feasible) on ``pts``, seeing its own metrics only."""
        u, hide = uses[k], hides[k]
        at = _unpruned(pts, u.rule)
        seen = view([pts[i] for i in at], hide)
        base = view([baseline], hide)[0] if baseline is not None else None
        i, score = u.rule.choose(seen, u.cfg, task, u.reference, base)
        ok = (u.rule.feasible(seen, u.cfg, task, base) if _takes_baseline(u.rule.feasible)
              else u.rule.feasible(seen, u.cfg, task))[i]
        return at[i], score, ok

    def stop(curve: list[dict]) -> bool:
        for u, hide in zip(uses, hides):
            seen = view([curve[i] for i in _unpruned(curve, u.rule)], hide)
            base = view([baseline], hide)[0] if baseline is not None else None
            if not (u.rule.can_stop(seen, u.cfg, task, base) if _takes_baseline(u.rule.can_stop)
                    else u.rule.can_stop(seen, u.cfg, task)):
                return False
        return True

    if used == "grid":
        curve: list[dict] = []
        with progress.bar(len(lambdas), f"select λ ({rule.name})", unit="λ") as bar:
            for lam in lambdas:
                curve.append(probe(lam))
                if baseline is None:
                    baseline = curve[0]  # λ = 0: the same dict the rules read as curve[0]
                if stop(curve):
                    break
    else:
        with progress.bar(len(points), f"select λ ({rule.name}, {used})", unit="λ") as bar:
            curve, baseline = _halving(probe, points, rule, cfg, task, reference, baseline,
                                       1 if used == "frontier" else COARSE_STEP)
    # the grid extension: which rules ask for it, on the grid's own points
    top = max(lambdas)
    asks, first = [], []
    for k, u in enumerate(uses):
        first.append(choose(k, curve))
        i, _, ok = first[-1]
        asks.append(bool(u.rule.extends_grid(u.cfg) and curve[i]["lambda"] == top and ok))
    ext = extension(lambdas) if any(asks) else []
    if ext:
        assert baseline is not None
        with progress.bar(len(ext), f"select λ ({rule.name}, extension)", unit="λ") as bar:
            if used == "grid":
                curve += [probe(lam) for lam in ext]
            else:
                part, _ = _halving(probe, [top] + ext, rule, cfg, task, reference, baseline,
                                   1 if used == "frontier" else COARSE_STEP,
                                   known={0: next(p for p in curve if p["lambda"] == top)})
                curve += part[1:]
    bar = None
    results = []
    for k, u in enumerate(uses):
        i, score, _ = choose(k, curve) if (asks[k] and ext) else first[k]
        last = (ext[-1] if asks[k] and ext else top)
        results.append({"index": i, "lambda": curve[i]["lambda"], "score": float(score), "oracle": u.rule.oracle,
                        "grid_extended": bool(asks[k] and ext), "grid_edge": curve[i]["lambda"] == last})
    idx, score = results[0]["index"], results[0]["score"]
    if ext:
        params["grid_extended"] = results[0]["grid_extended"]
    own_curve = view(curve, hides[0])
    also_curve = [{k: v for k, v in p.items() if k in hides[0]} for p in curve] if also else []
    return Selection(rule=rule.name, oracle=rule.oracle, lam=curve[idx]["lambda"], score=score, index=idx,
                     curve=own_curve, evals=evals, seconds=time.perf_counter() - t0,
                     grid_edge=results[0]["grid_edge"], params=params,
                     also={u.rule.name: r for u, r in zip(uses[1:], results[1:])}, _also_curve=also_curve)


def _halving(probe: Callable[[float], dict], points: list[float], rule: SelectionRule, cfg: Any, task: Any,
             reference: dict | None, baseline: dict | None, step: int,
             known: dict[int, dict] | None = None) -> tuple[list[dict], dict]:
    """The ``halving`` strategy (``frontier`` is its ``step`` = 1): the evaluated points (in λ
    order) and θ_0's metrics.

    It reads the rule only through ``feasible`` and ``choose`` on the partial curve, so any rule
    works. 1. A coarse pass over every ``step``-th λ (and the last), in order, that stops at the
    first infeasible one. 2. With c the rule's choice so far, s = ⌈s/2⌉ from ``step`` down to 1:
    evaluate the λs s grid steps either side of c, choose again. 3. While the choice moves,
    evaluate its two neighbours: it ends on a point whose both neighbours were evaluated.
    No λ at or past a known infeasible one is evaluated.

    Why it is the full grid's choice on a well-behaved curve -- the feasible λs are a prefix of
    the grid, and on them the rule's score falls strictly to its first minimiser m and never goes
    below it after (so the rule's argmin with ties to the smaller λ, ``rules._argmin``, is m and
    the order (score, λ), infeasible points last, is strictly unimodal with its minimum at m):
    after step 1, m lies within ``step`` grid steps of c (c's coarse neighbours are worse, or
    infeasible, or off the grid). If m is within s of c, then after evaluating c ± ⌈s/2⌉ the new
    choice c' is c or one of them, and m is within ⌈s/2⌉ of c' (if c' = c + ⌈s/2⌉ is better than
    c, m is past c; 2⌈s/2⌉ >= s). At s = 1 that gives c = m. Step 3 guards noisy curves only.
    With ``step`` = 1 only the prefix shape is assumed: step 1 is then every λ up to the first
    infeasible one, and steps 2 and 3 evaluate nothing more.
    [OURS, issue 15; the coarse-to-fine search of a unimodal sequence, cf. Kiefer 1953]"""
    feas_takes_baseline = _takes_baseline(rule.feasible)
    n = len(points)
    done: dict[int, dict] = dict(known or {})  # points already measured (a grid extension's start)
    bad_from = n  # the first grid index known infeasible: by the prefix shape, so is every later one

    def curve() -> list[dict]:
        return [done[i] for i in sorted(done)]

    def visit(i: int) -> None:
        nonlocal baseline, bad_from
        if i < 0 or i >= bad_from or i in done:
            return
        done[i] = probe(points[i])
        if baseline is None:
            baseline = done[i]  # points[0] is λ = 0 here, and it is visited first
        order = sorted(done)
        part = [done[j] for j in order]
        ok = rule.feasible(part, cfg, task, baseline) if feas_takes_baseline else rule.feasible(part, cfg, task)
        bad_from = min([bad_from] + [j for j, f in zip(order, ok) if not f])

    def chosen() -> int:
        part_idx = sorted(done)
        i, _ = rule.choose(curve(), cfg, task, reference, baseline)
        return part_idx[i]

    for i in list(range(0, n, step)) + [n - 1]:
        visit(i)
    s = step
    while s > 1:
        s = (s + 1) // 2
        c = chosen()
        visit(c - s)
        visit(c + s)
    c, prev = chosen(), None
    while c != prev:
        visit(c - 1)
        visit(c + 1)
        prev, c = c, chosen()
    assert baseline is not None
    return curve(), baseline


HALF_DECADE = 10 ** 0.5  # the §7.3 v2 grid's step: b·10^(k/2)
MAX_EXTENSIONS = 2  # §7.3 step 4: at most two more half-decades each way


def search(
    candidates: list[dict],
    build: Callable[[dict], Any],
    load: Callable[[dict], object],
    measure: Callable[[list[str]], dict],
    rule: SelectionRule,
    cfg: Any,
    task: Any,
    reference: dict | None,
    allowed: frozenset[str],
    metric_splits: Callable[[str], frozenset[str]],
    build_all: Callable[[list[dict]], list] | None = None,
    *,
    null: dict | None = None,
    original: Callable[[], dict] | None = None,
    extend: str | None = None,
    also: "list[RuleUse] | tuple" = (),
) -> tuple[dict, Selection]:
    """Choose a hyperparameter setting with ``rule`` (PROTOCOL §7.3); returns its state and the Selection.

    ``build(candidate)`` returns the unlearned state dict of one setting (it trains), or a list of
    state dicts, the weights after each epoch 1…T (iterate selection, §7.3 v2 step 2): each epoch is
    then a point of the curve (``epoch`` t) and (setting, epoch) is chosen jointly. ``load(state)``
    puts a state in the model ``measure(names)`` scores, which holds θ_0 on entry: θ_0 is the
    baseline the rule compares against. Each point is measured on the rule's splits only (the
    evaluator puts the model in eval mode), here in the driver, never in a build: a build may run in
    a worker that holds no val split. A point whose weights diverged (non-finite) is recorded, never
    scored, as a non-finite pool member is (§3).

    ``build_all(candidates)``, when given, builds every setting at once (an executor runs them in
    parallel) and returns, per candidate, what ``build`` would, or a ``BuildFailed`` (it failed
    twice); such a setting is recorded with its error and never scored, and the others are still
    compared.

    ``null`` (the v2 search, §7.3 steps 3–5; None: the v1 search of five points, last epoch):
    the candidate keys that mean "no update" (e.g. ``{"lr": 0.0}``). θ_0 (``original()``) is then a
    point of the curve, epoch 0, always feasible; when no other point is feasible, or the rule's
    choice is infeasible, θ_0 is returned and ``params`` says ``none_feasible``: a collapsed model
    is never the result. ``extend`` names the searched key: a choice at its largest value adds a
    half-decade above, a choice at its smallest value that changed the model (Acc D_f or Acc D_val
    differs from θ_0's) a half-decade below, each at most twice, built through ``build_all``; a
    choice still at an end is ``grid_edge``. The curve is ordered by (value, other keys, epoch), so a
    rule whose ties go to the earlier point gives §7.3's "smaller value, then earlier epoch".

    ``also`` (``selection.also``, the v2 search only): more rules choosing on the same points, as in
    ``sweep``: every point is measured on the union of the rules' metrics and each rule sees only its
    own. The run's own rule drives the extensions; the others choose among the points that gives.

    ``Selection.states[i]`` is the state of curve point i (None where it failed or diverged), kept in
    memory for the caller and never written to the record."""
    own = check_reads(rule, cfg, task, allowed, metric_splits)
    if null is None:
        t0 = time.perf_counter()
        return _search_v1(candidates, build, load, measure, own, rule, cfg, task, reference, measure(own),
                          build_all, t0)
    needs_of = [own] + [check_reads(u.rule, u.cfg, task, u.allowed, metric_splits) for u in also]
    needs = union(needs_of)
    uses = [RuleUse(rule, cfg, reference, allowed)] + list(also)
    pruner = _Pruner(uses, needs_of, task, measure)
    hides = [set(needs) - set(n) | ({PRUNED} if pruner.staged else set()) for n in needs_of]
    t0 = time.perf_counter()
    full_base = measure(needs)
    pruner.seed(full_base)  # θ_0 is a point every rule chooses among
    baseline = view([full_base], hides[0])[0]
    if original is None:
        raise ValueError("a search with a null point needs original(), θ_0's state")
    null_point = {**null, "epoch": 0, **full_base}  # θ_0: no update, epoch 0 (§7.3 step 3)
    points: list[tuple[dict, dict | None]] = [(null_point, original())]
    evals = 1
    failed: list[str] = []

    def run(cands: list[dict]) -> None:
        nonlocal evals
        built = build_all([dict(c) for c in cands]) if build_all is not None else [build(dict(c)) for c in cands]
        for cand, out in zip(cands, built):
            if isinstance(out, BuildFailed):
                points.append(({**cand, "epoch": None, "failed": out.error}, None))
                failed.append(f"{cand}: {out.error}")
                continue
            per_epoch = isinstance(out, (list, tuple))
            for t, state in enumerate(out if per_epoch else [out], start=1):
                point = {**cand, "epoch": t if per_epoch else None}
                if _finite(state):
                    load(state)
                    points.append(({**point, **(pruner() if pruner.staged else measure(needs))}, state))
                    evals += 1
                else:
                    points.append(({**point, "non_finite": True}, state))

    keys = list(dict.fromkeys(k for c in candidates for k in c))
    key = extend if extend is not None else (keys[0] if keys else None)
    rests = list({_rest_key(c, key): {k: v for k, v in c.items() if k != key} for c in candidates}.values())

    def order(point: dict) -> tuple:
        return tuple(-math.inf if point.get(k) is None else point[k] for k in (*keys, "epoch"))

    run(candidates)
    if failed and not any("non_finite" not in p and "failed" not in p for p, _ in points[1:]):
        raise StoreError(f"no setting of the search could be scored; {len(failed)} failed twice: " + "; ".join(failed))
    added: list[dict] = []
    ext = {"above": 0, "below": 0}
    while True:
        points.sort(key=lambda pe: order(pe[0]))
        curve = [p for p, _ in points]
        valid = [i for i, p in enumerate(curve) if "failed" not in p and "non_finite" not in p]
        scored = view([curve[i] for i in valid], hides[0])  # what the run's own rule may see
        feasible = [False] * len(curve)  # a diverged or failed setting is never feasible
        for i, ok in zip(valid, rule.feasible(scored, cfg, task, baseline)):
            feasible[i] = ok
        null_at = next(i for i, p in enumerate(curve) if p is null_point)
        feasible[null_at] = True  # θ_0 is the null setting, feasible by definition (§7.3 step 3)
        none_feasible = not any(ok for i, ok in enumerate(feasible) if i != null_at)
        j, score = rule.choose(scored, cfg, task, reference, baseline)
        idx = valid[j]
        if none_feasible or not feasible[idx]:  # never the "least damage" fallback of an empty feasible set
            idx, score = null_at, rule.choose(view([curve[null_at]], hides[0]), cfg, task, reference, baseline)[1]
        side = _edge(curve, idx, null_at, key, baseline)
        if side is None or extend is None or ext[side] >= MAX_EXTENSIONS:
            break
        values = [p[key] for p in curve if p is not null_point and key in p]
        v = max(values) * HALF_DECADE if side == "above" else min(values) / HALF_DECADE
        new = [{**r, key: float(f"{v:.6g}")} for r in rests]
        new = [{k: c[k] for k in keys if k in c} for c in new]  # the candidates' own key order
        ext[side] += 1
        added += new
        run(new)
    def chosen_at(i: int) -> dict:
        return {k: v for k, v in curve[i].items() if k in keys or (k == "epoch" and v is not None)}

    others = {}
    for k, u in enumerate(also, start=1):  # each other rule, on the same points, its own metrics only
        mine = [valid[j] for j in _unpruned([curve[i] for i in valid], u.rule)]
        seen, base = view([curve[i] for i in mine], hides[k]), view([full_base], hides[k])[0]
        j, sc = u.rule.choose(seen, u.cfg, task, u.reference, base)
        ok = u.rule.feasible(seen, u.cfg, task, base)[j]
        i = mine[j] if ok else null_at
        if not ok:
            sc = u.rule.choose(view([curve[null_at]], hides[k]), u.cfg, task, u.reference, base)[1]
        others[u.rule.name] = {"index": i, "score": float(sc), "oracle": u.rule.oracle, "chosen": chosen_at(i),
                               "grid_edge": _edge(curve, i, null_at, key, full_base) is not None}
    sel = Selection(rule=rule.name, oracle=rule.oracle, lam=float("nan"), score=float(score), index=idx,
                    curve=view(curve, hides[0]), evals=evals, seconds=time.perf_counter() - t0,
                    grid_edge=side is not None,
                    params={"search": "v2", "grid": candidates, "extended": added, "chosen": chosen_at(idx),
                            "baseline": baseline, "feasible": feasible, "none_feasible": none_feasible,
                            "grid_extended": bool(added), "extensions": ext},
                    also=others, _also_curve=[{k: v for k, v in p.items() if k in hides[0]} for p in curve]
                    if also else [])
    sel.states = [s for _, s in points]
    state = sel.states[idx]
    assert state is not None
    return state, sel


def _rest_key(c: dict, drop: str | None) -> str:
    """A candidate without the searched key: the settings an extension repeats at its new value."""
    import json

    return json.dumps({k: v for k, v in c.items() if k != drop}, sort_keys=True, default=str)


def _finite(state: dict) -> bool:
    import torch

    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def _edge(curve: list[dict], idx: int, null_at: int, key: str | None, baseline: dict) -> str | None:
    """The end of the searched key's grid the choice sits at, where §7.3 step 4 extends it: "above"
    when it is the largest value (the choice is feasible, or it would be θ_0), "below" when it is the
    smallest non-null value and changed the model (its Acc D_f or Acc D_val, or where the rule reads
    neither, any of its metrics, differs from θ_0's: a setting too weak to move the model would not
    move it at a smaller value either). Also "above" when θ_0 is chosen because no setting changed the
    model at all (a flat curve: gradient ascent at ~0 loss on the v1 boards): the grid stopped short of
    where the method acts (§7.3 step 4, "flat curve" [OURS]: without it such a baseline is reported as a
    no-op that was never given a step size that does anything). None: inside the grid, or
    θ_0 chosen over settings that did act."""
    if key is None:
        return None
    probe = [m for m in ("acc_forget", "acc_val") if m in baseline] or list(baseline)

    def moved(c: dict) -> bool:
        return any(c.get(m) != baseline[m] for m in probe)

    if idx == null_at:
        scored = [c for i, c in enumerate(curve) if i != null_at and "failed" not in c and "non_finite" not in c]
        return "above" if scored and not any(moved(c) for c in scored) else None
    p = curve[idx]
    values = [c[key] for i, c in enumerate(curve) if i != null_at and key in c]
    if len(set(values)) < 2:
        return None  # a grid of one value has no edge to move past
    if p[key] == max(values):
        return "above"
    if p[key] == min(values) and moved(p):
        return "below"
    return None


def _search_v1(candidates, build, load, measure, needs, rule, cfg, task, reference, baseline, build_all, t0):
    """The v1 search (``method.search_grid=v1``): the given settings only, each its last epoch, no θ_0
    point and no extension; when nothing is feasible the rule's fallback is what it returns. Kept so
    that protocol-1 records reproduce (PROTOCOL §7.3, §11)."""
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
        if isinstance(state, (list, tuple)):
            state = state[-1]  # the last epoch: v1 did not select epochs
        if _finite(state):
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
    sel.states = states
    state = states[idx]
    assert state is not None
    return state, sel


@dataclass
class BuildFailed:
    """A search setting whose build failed on every attempt (an executor's retry included)."""

    error: str
