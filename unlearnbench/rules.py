"""The built-in selection rules (PROTOCOL §5), registered through the plugin hook like any other."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import Choice, check_kappa, opt
from .hookspecs import hookimpl
from .selection import SelectionRule

KAPPA = 0.95  # the same constant as control_threshold: keep 95% of the baseline [P §4.2]


def _argmin(curve: list[dict], feasible: list[bool], score: list[float],
            floor: list[float] | None = None) -> tuple[int, float]:
    best = None
    for i, (ok, s) in enumerate(zip(feasible, score)):
        if ok and (best is None or s < score[best]):  # strict: ties go to the smaller λ
            best = i
    if best is None:  # λ = 0 is always feasible (§10.2 #21); in a hyperparameter search nothing may be.
        # Then the setting that keeps the most of the floor metric, i.e. the least damage (the search
        # records none_feasible): the best score among infeasible ones would reward a collapsed model.
        vals = floor if floor is not None else [-s for s in score]
        best = min(range(len(score)), key=lambda i: (-vals[i], i))
    return best, score[best]


class FloorSplit(Choice):
    val = "val"
    retain = "retain"


@dataclass
class ValMatchedConfig:
    kappa: float = opt(KAPPA, "feasible while Acc(D_val^r) >= kappa x its value at lambda = 0", "[OURS] §5(c)")
    floor_split: FloorSplit = opt(FloorSplit.val, "split for the feasibility floor: val, or retain (5,000 of D_r)",
                                  "[OURS] §5(c)")


class ValMatched(SelectionRule):
    """(c) The classifier default, oracle-free: match Acc D_f to Acc D_val (random forgetting),
    or minimise Acc D_f (class-wise), while keeping kappa of the val accuracy [PROTOCOL §5(c)]."""

    name = "val_matched"
    description = "oracle-free: |Acc Df - Acc Dval| (random) or Acc Df (class-wise), Dval floor kappa"
    Config = ValMatchedConfig
    reads = frozenset({"forget", "val"})

    def check_config(self, cfg: Any) -> None:
        check_kappa(cfg.kappa)

    def _floor_metric(self, cfg: Any) -> str:
        floor = FloorSplit.of(cfg.floor_split, "selection.floor_split")
        return "acc_val_retain" if floor == FloorSplit.val else "acc_retain_floor"

    def reads_for(self, cfg: Any, task: Any) -> frozenset[str]:
        return self.reads | ({"retain"} if cfg.floor_split == FloorSplit.retain else set())

    def needs(self, cfg: Any, task: Any) -> list[str]:
        return ["acc_forget", "acc_val", self._floor_metric(cfg)]

    def feasible(self, curve, cfg, task, baseline=None):
        floor = self._floor_metric(cfg)
        base = (baseline or curve[0])[floor]  # θ_0: λ = 0 opens every classifier grid
        return [c[floor] >= cfg.kappa * base for c in curve]

    def choose(self, curve, cfg, task, reference, baseline=None):
        feasible = self.feasible(curve, cfg, task, baseline)
        if task.class_wise:
            score = [c["acc_forget"] for c in curve]
        else:
            score = [abs(c["acc_forget"] - c["acc_val"]) for c in curve]
        return _argmin(curve, feasible, score, [c[self._floor_metric(cfg)] for c in curve])


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
    pass


class OracleAvgGap(SelectionRule):
    """(b) ORACLE: minimum Avg. Gap to the retrain model, reading D_test. Reproduces the
    paper's classifier rows only; its outputs are tagged selection=oracle [PROTOCOL §5(b)]."""

    name = "oracle_avg_gap"
    description = "ORACLE: min Avg. Gap to Retrain over Acc Dr, Df, Dtest, MIA (reads test + retrain)"
    Config = OracleConfig
    oracle = True
    reads = frozenset({"forget", "retain", "val", "test", "retrain"})

    def needs(self, cfg, task):
        return ["acc_retain", "acc_forget", "acc_test", "mia"]

    def choose(self, curve, cfg, task, reference, baseline=None):
        from .metrics import avg_gap

        if reference is None:
            raise ValueError("oracle_avg_gap needs the retrain oracle, which this scenario does not have")
        score = [avg_gap(c, reference)[0] for c in curve]
        return _argmin(curve, [True] * len(curve), score)


class OracleAvgGapVal(OracleAvgGap):
    """(b') ORACLE without the test leak: gap over Acc D_r, Acc D_f, Acc D_val [PROTOCOL §5(b)]."""

    name = "oracle_avg_gap_val"
    description = "ORACLE: min mean |gap| to Retrain over Acc Dr, Df, Dval (reads retrain, not test)"
    reads = frozenset({"forget", "retain", "val", "retrain"})
    KEYS = ("acc_retain", "acc_forget", "acc_val")

    def needs(self, cfg, task):
        return list(self.KEYS)

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
