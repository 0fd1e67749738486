"""The built-in selection rules (PROTOCOL §5), registered through the plugin hook like any other."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .config import Choice, check_kappa, opt
from .hookspecs import hookimpl
from .selection import SelectionRule

KAPPA = 0.95  # the same constant as control_threshold: keep 95% of the baseline [P §4.2]


def _argmin(curve: list[dict], feasible: list[bool], score: list[float],
            floor: list[float] | None = None, prefer_floor: bool = False) -> tuple[int, float]:
    """The feasible point of least score. Ties go to the earlier point (the smaller λ; in a search,
    the smaller value, then the earlier epoch: its curve is in that order), or with ``prefer_floor``
    first to the higher ``floor`` metric (the v2 ties of rule (c), PROTOCOL §5(c), §10.2 #46)."""
    best = None
    for i, (ok, s) in enumerate(zip(feasible, score)):
        if not ok:
            continue
        if best is None or s < score[best] or (
                prefer_floor and floor is not None and s == score[best] and floor[i] > floor[best]):
            best = i  # strict: among equals the earlier point stays
    if best is None:  # λ = 0 is always feasible (§10.2 #21); in a hyperparameter search nothing may be.
        # Then the setting that keeps the most of the floor metric, i.e. the least damage (the search
        # records none_feasible): the best score among infeasible ones would reward a collapsed model.
        vals = floor if floor is not None else [-s for s in score]
        best = min(range(len(score)), key=lambda i: (-vals[i], i))
    return best, score[best]


class FloorSplit(Choice):
    val = "val"
    retain = "retain"


class Target(Choice):
    original = "original"  # v2: the original's Acc D_val, a fixed number
    edited = "edited"  # v1: the edited model's own Acc D_val, which falls as λ grows


@dataclass
class ValMatchedConfig:
    kappa: float = opt(KAPPA, "feasible while Acc(D_val^r) >= kappa x its value at lambda = 0", "[OURS] §5(c)")
    floor_split: FloorSplit = opt(FloorSplit.val, "split for the feasibility floor: val, or retain (5,000 of D_r)",
                                  "[OURS] §5(c)")
    target: Target = opt(Target.original, "random forgetting matches Acc D_f to: original (v2, the original's Acc "
                         "D_val; v2 ties and grid extension) or edited (v1, the edited model's Acc D_val; v1 ties)",
                         "[OURS] §5(c) v2, §11")


class ValMatched(SelectionRule):
    """(c) The classifier default, oracle-free: match Acc D_f to the original's Acc D_val (random
    forgetting), or minimise Acc D_f (class-wise), while keeping kappa of the val accuracy
    [PROTOCOL §5(c) v2]. ``target=edited`` is the v1 rule: the edited model's own Acc D_val."""

    name = "val_matched"
    description = "oracle-free: |Acc Df - Acc Dval(original)| (random) or Acc Df (class-wise), Dval floor kappa"
    Config = ValMatchedConfig
    reads = frozenset({"forget", "val"})

    def check_config(self, cfg: Any) -> None:
        check_kappa(cfg.kappa)

    def _floor_metric(self, cfg: Any) -> str:
        floor = FloorSplit.of(cfg.floor_split, "selection.floor_split")
        return "acc_val_retain" if floor == FloorSplit.val else "acc_retain_floor"

    def _v2(self, cfg: Any) -> bool:
        return Target.of(getattr(cfg, "target", Target.original), "selection.target") == Target.original

    def reads_for(self, cfg: Any, task: Any) -> frozenset[str]:
        return self.reads | ({"retain"} if cfg.floor_split == FloorSplit.retain else set())

    def needs(self, cfg: Any, task: Any) -> list[str]:
        return ["acc_forget", "acc_val", self._floor_metric(cfg)]

    def extends_grid(self, cfg: Any) -> bool:
        return self._v2(cfg)

    def feasible(self, curve, cfg, task, baseline=None):
        floor = self._floor_metric(cfg)
        base = (baseline or curve[0])[floor]  # θ_0: λ = 0 opens every classifier grid
        return [c[floor] >= cfg.kappa * base for c in curve]

    def choose(self, curve, cfg, task, reference, baseline=None):
        feasible = self.feasible(curve, cfg, task, baseline)
        if task.class_wise:
            score = [c["acc_forget"] for c in curve]
        elif self._v2(cfg):
            target = (baseline or curve[0])["acc_val"]  # θ_0's: a fixed estimate of Retrain's Acc D_f
            score = [abs(c["acc_forget"] - target) for c in curve]
        else:
            score = [abs(c["acc_forget"] - c["acc_val"]) for c in curve]
        return _argmin(curve, feasible, score, [c[self._floor_metric(cfg)] for c in curve],
                       prefer_floor=self._v2(cfg))


@dataclass
class ControlThresholdConfig:
    kappa: float = opt(KAPPA, "feasible while control val accuracy >= kappa x its value at lambda = 0",
                       "[TTA], [NM], [P §4.2] §5(a)")
    early_stop: bool = opt(True, "stop the sweep at the first infeasible lambda", "[OURS] issue 3")


class ControlThreshold(SelectionRule):
    """(a) The CLIP default: minimise forget val accuracy while the control val accuracy keeps
    kappa of its λ = 0 value [PROTOCOL §5(a)]. The scenario names the pair (``Scoring.control``):
    on a classifier the control split is D_val^r and the forget split D_f (the "option for
    classifiers"; not recommended for random forgetting, where minimising Acc D_f over-forgets
    compared with Retrain)."""

    name = "control_threshold"
    description = "min forget val acc while control val acc >= kappa x baseline (CLIP default)"
    Config = ControlThresholdConfig
    reads = frozenset({"forget", "val"})

    def _metrics(self, task: Any) -> tuple[str, str]:
        return task.scoring.control

    def needs(self, cfg, task):
        return list(self._metrics(task))

    def feasible(self, curve, cfg, task, baseline=None):
        _, control = self._metrics(task)
        base = (baseline or curve[0])[control]  # measured at λ = 0 in the same run (§10.2 #21)
        return [c[control] >= cfg.kappa * base for c in curve]

    def choose(self, curve, cfg, task, reference, baseline=None):
        forget, control = self._metrics(task)
        return _argmin(curve, self.feasible(curve, cfg, task, baseline), [c[forget] for c in curve],
                       [c[control] for c in curve])

    def can_stop(self, curve, cfg, task, baseline=None):
        # No λ past the first violation is evaluated: accuracy on the control split falls as λ grows.
        return bool(cfg.early_stop) and len(curve) > 1 and not self.feasible(curve, cfg, task, baseline)[-1]

    def check_config(self, cfg: Any) -> None:
        check_kappa(cfg.kappa)


@dataclass
class OracleConfig:
    subsample: bool = opt(True, "score Acc D_r on the fixed 5,000 of D_r and MIA on <= 2,000 + 2,000 during "
                          "selection (the full metrics at the choice); false: the full metrics at every point",
                          "[OURS] §5(d), §10.2 #44")


# Avg. Gap's components (§8.3) -> the metric a selection-time point holds for each
SUBSAMPLED = {"acc_retain": "acc_retain_floor", "acc_forget": "acc_forget", "acc_test": "acc_test", "mia": "mia_sel"}
FULL = {k: k for k in SUBSAMPLED}
HALF_A = {"acc_retain": "acc_retain_floor", "acc_forget": "acc_forget", "acc_test": "acc_test_a", "mia": "mia_sel_a"}


def _gaps(curve: list[dict], reference: dict | None, names: dict[str, str], rule: str) -> list[float]:
    from .metrics import avg_gap

    if reference is None:
        raise ValueError(f"{rule} needs the retrain oracle, which this scenario does not have")
    ref = {k: reference[m] for k, m in names.items()}
    return [avg_gap({k: c[m] for k, m in names.items()}, ref)[0] for c in curve]


# The order a point's gap components are measured in when the rule is pruned (``SelectionRule.stages``):
# Acc D_f first (the run's own rule has it), then the accuracies by cost, the SVC MIA last (the dearest).
STAGE_ORDER = ("acc_forget", "acc_retain", "acc_test", "mia")


def _bound(point: dict, reference: dict | None, names: dict[str, str]) -> float:
    """¼·Σ|Δ| over the components ``point`` holds: each missing one adds |Δ| ≥ 0 to Avg. Gap."""
    if reference is None:
        return -math.inf
    return sum(abs(float(point[m]) - float(reference[m])) for m in names.values() if m in point) / len(names)


class OracleAvgGap(SelectionRule):
    """(b) ORACLE: minimum Avg. Gap to the retrain model, reading D_test. Reproduces the
    paper's classifier rows only; its outputs are tagged selection=oracle [PROTOCOL §5(b)].
    During selection Acc D_r and MIA come from fixed subsamples, Retrain's reference from the
    same ones (§5(d); ``subsample=false``: the full sets)."""

    name = "oracle_avg_gap"
    description = "ORACLE: min Avg. Gap to Retrain over Acc Dr, Df, Dtest, MIA (reads test + retrain)"
    Config = OracleConfig
    oracle = True
    reads = frozenset({"forget", "retain", "val", "test", "retrain"})

    def _names(self, cfg) -> dict[str, str]:
        return SUBSAMPLED if getattr(cfg, "subsample", True) else FULL

    def needs(self, cfg, task):
        return list(self._names(cfg).values())

    def extends_grid(self, cfg) -> bool:
        return True  # v2 rule: the grid is extended when the choice is its last point (§5(c))

    def choose(self, curve, cfg, task, reference, baseline=None):
        score = _gaps(curve, reference, self._names(cfg), self.name)
        return _argmin(curve, [True] * len(curve), score)

    def _map(self, cfg) -> dict[str, str]:
        return self._names(cfg)

    def stages(self, cfg, task):
        names = self._map(cfg)
        return [[names[c]] for c in STAGE_ORDER]

    def lower_bound(self, point, cfg, reference):
        return _bound(point, reference, self._map(cfg))

    def point_score(self, point, cfg, reference):
        return _gaps([point], reference, self._map(cfg), self.name)[0]


@dataclass
class SplitTestConfig:
    pass


class OracleSplitTest(OracleAvgGap):
    """(b'') ORACLE, for selection optimism: rule (b) with Acc D_test and the MIA non-members taken from
    test half A only (Retrain's reference on the same half); the record reports the Avg. Gap at the
    choice on half A and on half B, and optimism = gap(B) - gap(A) [PROTOCOL §5(d)]. Never ranked."""

    name = "oracle_split_test"
    description = "ORACLE: rule (b) on test half A; reports the gap on halves A and B (selection optimism)"
    Config = SplitTestConfig

    def needs(self, cfg, task):
        return list(HALF_A.values())

    def _map(self, cfg) -> dict[str, str]:
        return HALF_A

    def choose(self, curve, cfg, task, reference, baseline=None):
        return _argmin(curve, [True] * len(curve), _gaps(curve, reference, HALF_A, self.name))

    def final_report(self, measure, reference) -> dict:
        """At the chosen model: the full Avg. Gap on each half (``measure(names)`` scores the model,
        ``reference(names)`` Retrain), and the optimism gap(B) - gap(A)."""
        from .metrics import avg_gap

        out: dict = {}
        for half in ("a", "b"):
            names = {"acc_retain": "acc_retain", "acc_forget": "acc_forget", "acc_test": f"acc_test_{half}",
                     "mia": f"mia_{half}"}
            got, ref = measure(list(names.values())), reference(list(names.values()))
            out[f"gap_{half}"] = avg_gap({k: got[m] for k, m in names.items()},
                                         {k: ref[m] for k, m in names.items()})[0]
        out["optimism"] = out["gap_b"] - out["gap_a"]
        return out


class OracleAvgGapVal(OracleAvgGap):
    """(b') ORACLE without the test leak: gap over Acc D_r, Acc D_f, Acc D_val [PROTOCOL §5(b)]."""

    name = "oracle_avg_gap_val"
    description = "ORACLE: min mean |gap| to Retrain over Acc Dr, Df, Dval (reads retrain, not test)"
    Config = SplitTestConfig  # no options: its three accuracies are cheap at every point
    reads = frozenset({"forget", "retain", "val", "retrain"})
    KEYS = ("acc_retain", "acc_forget", "acc_val")

    def needs(self, cfg, task):
        return list(self.KEYS)

    def stages(self, cfg, task):
        return None  # three accuracies, one of them the run's own: nothing worth skipping

    def choose(self, curve, cfg, task, reference, baseline=None):
        if reference is None:
            raise ValueError("oracle_avg_gap_val needs the retrain oracle, which this scenario does not have")
        score = [sum(abs(c[k] - reference[k]) for k in self.KEYS) / len(self.KEYS) for c in curve]
        return _argmin(curve, [True] * len(curve), score)


@hookimpl
def register_selection_rules(register):
    register(ValMatched())
    register(ControlThreshold())
    register(OracleAvgGap())
    register(OracleAvgGapVal())
    register(OracleSplitTest())
