"""Scenarios, the Task they build for one trial, and the Scoring a scenario declares.

A scenario owns the data, ONE fixed index manifest per (scenario, trial) (PROTOCOL §1.2),
the model factory and the recipes. It never knows which method runs.

How a trial is scored is data, not a branch in the core: ``Task.scoring`` (a frozen
``Scoring``) says which accuracies every run reports, whether MIA and a Retrain oracle exist,
the board's columns and which record metric fills each, what orders the board, the control
pair threshold rules read, the metrics of pool-member points and of the diagnostic test pass,
and the access role of every split. ``ClassifierScenario`` uses the defaults; a family with
other splits (CLIP dataset negation, scenarios/clip/) sets its own, with no core edit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import ConfigError
from .recipe import PoolGrid, Recipe
from .seeding import numpy_rng, sha256_hex, stream_seed

if TYPE_CHECKING:
    import torch


# Which declared data (forget / retain / val / test) each split of the classifier manifest
# belongs to (PROTOCOL §1.1-1.2, §8.2): what lets rules and methods be held to their splits.
CLASSIFIER_SPLIT_ROLES: Mapping[str, frozenset[str]] = MappingProxyType({
    "forget": frozenset({"forget"}), "retain": frozenset({"retain"}), "retain_floor": frozenset({"retain"}),
    "val": frozenset({"val"}), "val_retain": frozenset({"val"}), "test": frozenset({"test"}),
    "test_forget_class": frozenset({"test"}), "train": frozenset({"forget", "retain"}),
    "mia_members": frozenset({"retain"}), "mia_nonmembers": frozenset({"test"}),
    # the selection-time subsamples of rule (b) and the test halves of rule (b'') (PROTOCOL §5(d))
    "test_a": frozenset({"test"}), "test_b": frozenset({"test"}),
    **{f"mia_members_{s}": frozenset({"retain"}) for s in ("sel", "a", "b", "sel_a")},
    **{f"mia_nonmembers_{s}": frozenset({"test"}) for s in ("sel", "a", "b", "sel_a")},
})

# Splits a classifier manifest derives from its other splits and the trial's ``mia`` stream
# (``selection_splits``). They are left out of the manifest's hash: they add no information (a pure
# function of what is hashed), and keeping them out keeps every artifact keyed by it (θ_init, the
# original, Retrain, pool members) the one it was before protocol v2 added them.
DERIVED_SPLITS = ("retain_floor", "test_a", "test_b",
                  *(f"mia_{w}_{s}" for w in ("members", "nonmembers") for s in ("sel", "a", "b", "sel_a")))
FLOOR_SIZE = 5000  # the fixed D_r subset of floor_split=retain and of rule (b)'s Acc D_r [PROTOCOL §5(c), (d)]
MIA_SEL_SIZE = 2000  # at most this many members and non-members in rule (b)'s selection-time MIA [§5(d)]


def manifest_digest(manifest: dict) -> str:
    """The manifest's hash: its canonical JSON without the ``DERIVED_SPLITS``."""
    if not any(k in manifest.get("splits", {}) for k in DERIVED_SPLITS):
        return sha256_hex(manifest)
    drop = set(DERIVED_SPLITS)
    core = {**manifest, "splits": {k: v for k, v in manifest["splits"].items() if k not in drop}}
    if "sizes" in manifest:
        core["sizes"] = {k: v for k, v in manifest["sizes"].items() if k not in drop}
    return sha256_hex(core)


def selection_splits(splits: dict, labels, trial: int) -> dict:
    """The subsamples protocol v2's oracle rules select on (PROTOCOL §5(d)), drawn once per trial
    from the ``mia`` stream (sub-keyed, so no other draw of that stream moves):

    - ``mia_members_sel`` / ``mia_nonmembers_sel``: stratified, at most 2,000 of each MIA side;
    - ``retain_floor``: 5,000 of D_r (all of it when smaller) that contain ``mia_members_sel``, the rest
      drawn uniformly, so rule (b)'s selection-time Acc D_r pass also yields the members' logits
      (``Evaluator`` reuses a split's logits for its subsets) [OURS];
    - ``test_a`` / ``test_b``: D_test′ cut into two stratified halves (rule (b''));
    - ``mia_{members,nonmembers}_{a,b}``: the non-members in each half, and disjoint random member
      sets of the same sizes; ``_sel_a``: the selection subsample's part in half A.

    Every non-member subset lies in D_test′ and every member subset in ``retain_floor`` or D_r, so a
    sweep that already scores test and the floor forwards nothing more for them."""
    import numpy as np

    rng = lambda name: numpy_rng(trial, "mia", "selection", name)  # noqa: E731
    members, nonmembers = np.asarray(splits["mia_members"]), np.asarray(splits["mia_nonmembers"])
    retain, test = np.asarray(splits["retain"]), np.asarray(splits["test"])
    m_sel = stratified_take(members, labels, min(MIA_SEL_SIZE, len(members)), rng("members"))
    n_sel = stratified_take(nonmembers, labels, min(MIA_SEL_SIZE, len(nonmembers)), rng("nonmembers"))
    others = np.setdiff1d(retain, m_sel)
    fill = min(max(FLOOR_SIZE - len(m_sel), 0), len(others))
    floor = np.sort(np.concatenate([m_sel, rng("floor").choice(others, size=fill, replace=False)]))
    test_a = stratified_take(test, labels, len(test) // 2, rng("halves"))
    test_b = np.setdiff1d(test, test_a)
    out = {"retain_floor": floor, "test_a": test_a, "test_b": test_b,
           "mia_members_sel": m_sel, "mia_nonmembers_sel": n_sel}
    perm = members[rng("member_halves").permutation(len(members))]
    for half, part in (("a", test_a), ("b", test_b)):
        out[f"mia_nonmembers_{half}"] = np.intersect1d(nonmembers, part)
    na, nb = len(out["mia_nonmembers_a"]), len(out["mia_nonmembers_b"])
    if na + nb <= len(perm):
        out["mia_members_a"], out["mia_members_b"] = np.sort(perm[:na]), np.sort(perm[na:na + nb])
    else:  # fewer members than non-members (a small D_r): each half draws its own
        out["mia_members_a"], out["mia_members_b"] = np.sort(perm[:na]), np.sort(perm[:nb])
    out["mia_nonmembers_sel_a"] = np.intersect1d(n_sel, test_a)
    m_sel_perm = m_sel[rng("sel_a").permutation(len(m_sel))]
    out["mia_members_sel_a"] = np.sort(m_sel_perm[:len(out["mia_nonmembers_sel_a"])])
    return out

# The board's columns (PROTOCOL §8, [P T2]): column -> the record metric that fills it.
BOARD_COLUMNS = ("acc_retain", "acc_forget", "acc_test", "mia")


@dataclass(frozen=True)
class Scoring:
    """How a scenario's trials are scored and shown; the runner, rules, stages and the report
    read it instead of branching on a family. The defaults are the classifier protocol."""

    # splits whose top-1 accuracy every final evaluation reports (``acc_<split>``), in order
    report: tuple[str, ...] = ("retain", "forget", "test", "val")
    mia: bool = True  # MIA-efficacy is reported (§8.2)
    has_oracle: bool = True  # a Retrain oracle exists: Avg. Gap is defined (§8.3)
    # board column -> record metric (a column with no metric here stays visibly empty)
    board: tuple[tuple[str, str], ...] = tuple((c, c) for c in BOARD_COLUMNS)
    rank: str = "avg_gap"  # what orders the board: Avg. Gap, or a board column (lowest first)
    legend: str = ""  # the board's sentence on what its columns mean; "" = the classifier one
    # (record metric, header) of the CLI's run summary
    summary: tuple[tuple[str, str], ...] = (("acc_retain", "Acc Dr"), ("acc_forget", "Acc Df"),
                                            ("acc_test", "Acc Dtest"), ("acc_val", "Acc Dval"), ("mia", "MIA"))
    # (forget metric, control metric) a threshold rule reads (PROTOCOL §5(a)): classifiers use D_f
    # and D_val^r (the "option for classifiers")
    control: tuple[str, str] = ("acc_forget", "acc_val_retain")
    member_points: tuple[str, ...] = ("acc_retain", "acc_forget", "acc_test")  # each pool member at its λ*
    # the test pass after selection (§5): with the curve's Acc D_f, enough for Avg. Gap at every λ
    # (issue 16 acceptance 8: how far each rule's λ* lands from the λ of least Avg. Gap)
    diagnostic: tuple[str, ...] = ("acc_test", "acc_retain", "acc_forget", "mia")
    split_roles: Mapping[str, frozenset[str]] = field(default_factory=lambda: CLASSIFIER_SPLIT_ROLES)

    def metric_splits(self, name: str) -> frozenset[str]:
        """The declared data a metric reads: ``acc_<split>`` its split's role, ``mia`` forget,
        retain and test (members, non-members, D_f)."""
        if name == "mia" or (name.startswith("mia_") and f"mia_members_{name[4:]}" in self.split_roles):
            return frozenset({"forget", "retain", "test"})  # mia_<s>: the MIA on subsample s (§5(d))
        if name.startswith("acc_") and name[4:] in self.split_roles:
            return frozenset(self.split_roles[name[4:]])
        raise ConfigError(f"unknown metric {name!r}: metrics are 'mia' and acc_<split> for the splits "
                          f"{sorted(self.split_roles)}")

    def to_board(self, metrics: dict | None) -> dict | None:
        """A record's metrics with each board column filled from its metric."""
        if not metrics:
            return metrics
        return {**metrics, **{col: metrics[m] for col, m in self.board if m in metrics}}

    def record(self) -> dict:
        """What run.json keeps, so the report renders a record without the scenario installed."""
        return {"board": dict(self.board), "rank": self.rank, "legend": self.legend,
                "summary": [list(c) for c in self.summary]}


@dataclass
class RawData:
    """A data set in memory: inputs in [0, 1] pixel units, labels, and where train/test came from."""

    x: "torch.Tensor"  # (N, C, H, W) float32
    y: "torch.Tensor"  # (N,) int64
    train_pool: Any  # indices of the official train split (numpy int64)
    test: Any | None  # indices of the official test split, or None when the data set has none
    fingerprint: str  # hash of the raw files and of the label array
    num_classes: int
    source: str = ""  # where the files were read from
    val: Any | None = None  # indices of a predefined val split (CLIP EuroSAT), carved from nothing else
    classnames: tuple | None = None  # read from the data set's own files (Stanford Cars' devkit)


@dataclass
class Task:
    """Everything one trial of a scenario defines. Stages read splits only through this."""

    scenario: str
    trial: int
    data: RawData
    manifest: dict
    manifest_hash: str
    arch: str
    in_channels: int
    recipe: Recipe  # the original's recipe; Retrain uses the same (PROTOCOL §2.1)
    pools: dict[str, PoolGrid]
    threads: int = 1
    # named train-time augmentations this scenario adds to the suite's (none, crop_flip, rrc_flip),
    # for its recipes' ``augment`` names (CLIP: clip_rrc, clip_randaug)
    augmentations: Mapping[str, Callable | None] = field(default_factory=dict)
    # named λ grids this scenario adds to the suite's (classifier, unit), for ``selection.grid``
    grids: Mapping[str, list[float]] = field(default_factory=dict)
    scoring: Scoring = field(default_factory=Scoring)
    original_source: str = "train"  # "train" (from θ_init on D_train) or "pretrained" (a given θ_0)
    frozen: tuple[str, ...] = ()  # parameter names that stay 0 in τ (e.g. CLIP's attention)
    search_baseline_lr: bool = False  # PROTOCOL §7.3: CPU scenarios select baseline lrs by rule (c)
    # Pretrained classifier scenarios (CUB-200): returns (weights, tag) where weights are loaded over
    # the init-stream draw (the backbone; the head stays drawn) and tag identifies them in store keys.
    pretrained: "Callable[[], tuple[dict, str]] | None" = None
    # the training precision (-o amp=...; set by the runner): every training of this trial runs in it,
    # and its trained artifacts are keyed by it when it is not fp32 (``Stages``)
    amp: str = "fp32"

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def class_wise(self) -> bool:
        return self.manifest["forget_class"] is not None

    def indices(self, split: str):
        try:
            return self.manifest["splits"][split]
        except KeyError:
            raise ConfigError(f"scenario {self.scenario!r} has no split {split!r}; it has "
                              f"{sorted(self.manifest['splits'])}") from None

    def tensors(self, split: str) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        idx = torch.as_tensor(self.indices(split), dtype=torch.long)
        return self.data.x[idx], self.data.y[idx]

    def route(self, model, split: str | None) -> None:
        """Prepare ``model`` to score ``split`` (None: back to training). One head serves every
        split of a classifier; a multi-head model (CLIP) switches heads here."""

    def augment_for(self, recipe: Recipe) -> Callable | None:
        """The augmentation ``recipe.augment`` names (with RandAugment when the recipe asks)."""
        from .augment import recipe_augmentation

        return recipe_augmentation(recipe, self.augmentations)

    def new_model(self):
        from .models import build_model

        return build_model(self.arch, self.num_classes, self.in_channels)

    def detached(self, splits: list[str]) -> "Task":
        """This task holding only the rows of ``splits``, for a job sent to a worker (an executor's):
        ``tensors(s)`` gives the same tensors for those splits, and every other split, test among
        them, is absent (asking for one is the usual unknown-split error). Store keys, the recipe,
        the model and the augmentations are the task's own."""
        import dataclasses

        import numpy as np
        import torch

        # Rows are read through ``tensors`` (a subclass may address more than ``data``: CLIP's control
        # rows follow the forget set's), so the detached task's indices all address its own ``data``.
        xs, ys, splits_idx, at = [], [], {}, 0
        for s in splits:
            if s not in self.manifest["splits"]:
                continue
            x, y = self.tensors(s)
            xs.append(x)
            ys.append(y)
            splits_idx[s] = list(range(at, at + len(y)))
            at += len(y)
        x = torch.cat(xs) if xs else self.data.x[:0]
        y = torch.cat(ys) if ys else self.data.y[:0]
        data = dataclasses.replace(self.data, x=x, y=y, train_pool=np.arange(0), test=None, val=None)
        out = dataclasses.replace(self, data=data, manifest={**self.manifest, "splits": splits_idx})
        # A subclass's own state outside the dataclass fields (CLIP's control set and encoder name,
        # which new_model needs) is lost by replace; carry it over.
        names = {f.name for f in dataclasses.fields(self)}
        for k, v in vars(self).items():
            if k not in names:
                setattr(out, k, v)
        return out


class Scenario:
    """Base of every scenario plugin. Subclasses set ``name`` and implement ``load_raw`` (read the
    data set, once per process: a sweep reuses it for every cell) and ``build_task`` (one trial's
    Task over it)."""

    name: str = ""
    description: str = ""
    Config: type | None = None
    suite_defaults: dict = {}
    # The paper's reported numbers for this scenario (``paper_table``), shown by the leaderboard as
    # labelled rows beside the measured ones, never mixed with them; None: the paper reports none.
    paper: dict | None = None
    # Non-empty: a smoke scenario, too small or noisy to rank methods; the sentence its board prints
    # (PROTOCOL §10.2 #47: digits-10pct).
    smoke: str = ""
    # The table this scenario is one column of, averaged with the others (``ScenarioGroup``); None: it
    # has only its own board.
    group: "ScenarioGroup | None" = None
    # The §8.7 ensemble sizes ``unlearnbench ensemble`` builds by default (``ensemble.build.PRESETS``):
    # faithful = the references' own (PROTOCOL §8.7.4: affordable on digits); minimal = the cheapest
    # faithful configuration, for scenarios where one model costs minutes
    ensemble_preset: str = "faithful"

    def load_raw(self, data_root: str | None) -> RawData:  # pragma: no cover
        raise NotImplementedError

    def build_task(self, cfg: Any, trial: int, data_root: str | None,
                   raw: RawData | None = None) -> Task:  # pragma: no cover
        """One trial's Task; ``raw`` is ``load_raw``'s result when the caller already has it."""
        raise NotImplementedError


@dataclass(frozen=True)
class ScenarioGroup:
    """Scenarios a paper reports as one table, each a column, with their unweighted mean (PROTOCOL §8.4:
    CLIP's eight forget data sets, [P T1]). Every member scenario sets ``Scenario.group`` to the same
    group; the leaderboard then writes ``<name>.md`` and ``<name>.csv`` (``report.groups``): one table per
    value of the config key ``split_by`` (CLIP: the architecture), a row per method with its ``columns``
    for each member and their mean over all the members. A member without records is visibly missing,
    and a row that lacks a member has no mean: it says how many members it has, never a mean over fewer.

    - ``members``: (scenario name, column header), in column order; the mean is over all of them;
    - ``columns``: (record metric, header), shown in each member's cell as "a / b" and averaged;
    - ``split_labels``: (value of ``split_by``, header), in table order (other values follow, as they are);
    - ``reference``: the label of the row of the records' ``original`` model (θ_0);
    - ``paper``: the paper's rows, each ``{"split", "label", "method", "cells": {member: {metric: value}},
      "mean": {metric: value}}`` (a value None or absent: not reported), from ``paper_source``."""

    name: str
    title: str
    members: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str], ...]
    split_by: str = ""
    split_labels: tuple[tuple[str, str], ...] = ()
    paper: tuple[Mapping[str, Any], ...] = ()
    paper_source: str = ""
    legend: str = ""
    reference: str = "Original (no unlearning)"  # the row of each record's ``original`` model

    def __post_init__(self):
        names = [m for m, _ in self.members]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"scenario group {self.name!r} needs distinct members, not {names}")
        for row in self.paper:
            stray = set(row.get("cells") or {}) - set(names)
            if stray:
                raise ValueError(f"scenario group {self.name!r}: paper row {row.get('label')!r} has cells for "
                                 f"{sorted(stray)}, which are not members")


PAPER_COLUMNS = ("acc_retain", "acc_forget", "acc_test", "mia", "avg_gap")


def paper_table(table: str, rows: list[tuple]) -> dict:
    """A paper's reported rows as data (PROTOCOL §9.3-9.4), for ``Scenario.paper``.

    Each row is ``(method, label, used_splits, Acc Dr, Acc Df, Acc Dtest, MIA, Avg. Gap)``; a value is
    a number, ``(mean, std)``, None (not reported) or a string ``"80.58d"``: derived, back-solved from
    the printed Avg. Gap. Labels keep the paper's marks: ``*`` borrowed by the paper, ``†`` single
    best after a hyperparameter search."""
    out = []
    for method, label, splits, *vals in rows:
        cells: dict[str, dict | None] = {}
        for col, v in zip(PAPER_COLUMNS, vals):
            if v is None:
                cells[col] = None
            elif isinstance(v, tuple):
                cells[col] = {"mean": v[0], "std": v[1]}
            elif isinstance(v, str):  # "80.58d": derived
                cells[col] = {"mean": float(v[:-1]), "std": None, "derived": True}
            else:
                cells[col] = {"mean": float(v), "std": None}
        out.append({"method": method, "label": label, "used_splits": splits, "cells": cells})
    return {"table": table, "rows": out}


# -- classifier scenarios -----------------------------------------------------------------

def stratified_take(idx, labels, k: int, rng):
    """Draw exactly k of ``idx``, stratified by class (largest-remainder allocation)."""
    import numpy as np

    idx = np.asarray(idx)
    lab = np.asarray(labels)[idx]
    classes, counts = np.unique(lab, return_counts=True)
    quota = counts * k / len(idx)
    take = np.floor(quota).astype(int)
    rest = k - take.sum()
    order = np.lexsort((classes, -(quota - take)))  # largest remainder first, ties by class id
    take[order[:rest]] += 1
    chosen = []
    for c, t in zip(classes, take):
        members = idx[lab == c]
        chosen.append(members[rng.permutation(len(members))[:t]])
    out = np.sort(np.concatenate(chosen))
    return out


@dataclass
class RandomForgetConfig:
    forget_pct: float = field(default=10.0, metadata={
        "help": "percent of D_train forgotten, drawn uniformly (not stratified)", "source": "[SAL] §1.2"})


def random_forget_config(pct: float) -> type:
    """RandomForgetConfig with another default percentage (cifar10-50pct: 50, PROTOCOL §1.2)."""
    if pct == 10.0:
        return RandomForgetConfig
    from dataclasses import make_dataclass

    meta = RandomForgetConfig.__dataclass_fields__["forget_pct"].metadata
    return make_dataclass(f"RandomForget{pct:g}Config", [("forget_pct", float, field(default=pct, metadata=meta))],
                          bases=(RandomForgetConfig,))


@dataclass
class ClassForgetConfig:
    forget_class: str = field(default="0", metadata={
        "help": "the class forgotten: a class id, or 'cycle' for trial mod C", "source": "[SAL] §1.2"})


class ClassifierScenario(Scenario):
    """A classifier scenario: base partition, forget set and MIA sample per PROTOCOL §1.1–1.2, §8.2.

    One family registers one instance per forgetting type: ``Family("x-10pct", "random")``
    and ``Family("x-class", "class")``.
    """

    title: str = ""  # e.g. "scikit-learn digits, cnn-s"

    def __init__(self, name: str, forget: str, pct: float = 10.0, paper: dict | None = None):
        if forget not in ("random", "class"):
            raise ValueError(f"forget must be 'random' or 'class', not {forget!r}")
        self.name = name
        self.paper = paper
        self.forget = forget
        self.Config = random_forget_config(pct) if forget == "random" else ClassForgetConfig
        what = f"{pct:g}% random" if forget == "random" else "class-wise (class 0)"
        self.description = f"{self.title}, {what} forgetting"

    arch: str = ""
    in_channels: int = 1
    recipe: Recipe
    pools: dict[str, PoolGrid] = {}
    val_frac: float = 0.1  # of the train pool [PROTOCOL §1.1]
    test_frac: float | None = None  # carve a test split when the data set has none
    threads: int = 1
    forget: str = "random"  # "random" or "class"
    search_baseline_lr: bool = False  # PROTOCOL §7.3: True on the CPU scenarios
    suite_defaults = {"selection": {"name": "val_matched", "grid": "classifier"}}

    def base_partition(self, raw: RawData) -> dict:
        import numpy as np

        rng = numpy_rng(0, "split")  # the base partition is fixed per scenario: split seed 0
        labels = raw.y.numpy()
        pool = np.asarray(raw.train_pool)
        if raw.test is None:
            assert self.test_frac is not None
            test = stratified_take(pool, labels, math.ceil(self.test_frac * len(pool)), rng)
            pool = np.setdiff1d(pool, test)
        else:
            test = np.asarray(raw.test)
        val = stratified_take(pool, labels, math.ceil(self.val_frac * len(pool)), rng)
        train = np.setdiff1d(pool, val)
        return {"train": train, "val": val, "test": test}

    def check_config(self, cfg: Any) -> None:
        """What can be refused before the data set is read (resolve time, so `config` refuses it too);
        the class id's upper bound needs the data set and is checked when the task is built."""
        if self.forget == "class":
            fc = str(cfg.forget_class)
            if fc != "cycle" and not (fc.isdigit()):
                raise ConfigError(f"scenario.forget_class must be a class id (0, 1, ...) or 'cycle', not {fc!r} "
                                  "(e.g. -o scenario.forget_class=0)")
        else:
            pct = float(cfg.forget_pct)
            if not 0 < pct < 100:  # also refuses nan
                raise ConfigError(f"scenario.forget_pct must be in (0, 100), not {cfg.forget_pct} "
                                  "(e.g. -o scenario.forget_pct=10)")

    def _forget_class(self, cfg: Any, trial: int, num_classes: int) -> int | None:
        if self.forget != "class":
            return None
        fc = str(cfg.forget_class)
        if fc == "cycle":
            return trial % num_classes  # PROTOCOL §1.2 option forget_class=cycle
        try:
            c = int(fc)
        except ValueError:
            raise ConfigError(f"scenario.forget_class must be a class id or 'cycle', not {fc!r}") from None
        if not 0 <= c < num_classes:
            raise ConfigError(f"scenario.forget_class={c} is outside 0..{num_classes - 1}")
        return c

    def make_manifest(self, raw: RawData, cfg: Any, trial: int) -> dict:
        import numpy as np

        base = self.base_partition(raw)
        labels = raw.y.numpy()
        train, val, test = base["train"], base["val"], base["test"]
        c = self._forget_class(cfg, trial, raw.num_classes)
        if c is None:
            pct = float(cfg.forget_pct)
            if not 0 < pct < 100:
                raise ConfigError(f"scenario.forget_pct must be in (0, 100), not {pct}")
            k = int(math.floor(pct / 100 * len(train)))  # not stratified [SAL]
            forget = np.sort(numpy_rng(trial, "forget").choice(train, size=k, replace=False))
            test_p = test
            extra: dict = {}
        else:
            forget = train[labels[train] == c]
            test_p = test[labels[test] != c]
            extra = {"test_forget_class": test[labels[test] == c], "val_retain": val[labels[val] != c]}
        retain = np.setdiff1d(train, forget)
        mia_rng = numpy_rng(trial, "mia")
        if len(retain) >= len(test_p):  # PROTOCOL §8.2: members = random |D_test'| of D_r
            members = np.sort(mia_rng.choice(retain, size=len(test_p), replace=False))
            nonmembers = test_p
        else:
            members = retain
            nonmembers = np.sort(mia_rng.choice(test_p, size=len(retain), replace=False))
        splits = {"train": train, "val": val, "test": test_p, "forget": forget, "retain": retain,
                  "mia_members": members, "mia_nonmembers": nonmembers, **extra}
        if c is None:
            splits["val_retain"] = val
        splits.update(selection_splits(splits, labels, trial))
        return {
            "scenario": self.name,
            "trial": trial,
            "fingerprint": raw.fingerprint,
            "forget_class": c,
            "forget_pct": None if c is not None else float(cfg.forget_pct),
            "splits": {k: [int(i) for i in v] for k, v in splits.items()},
            "sizes": {k: int(len(v)) for k, v in splits.items()},
            "seeds": {s: stream_seed(trial, s) for s in ("forget", "init", "order", "pool", "mia")},
            "split_seed": 0,
        }

    def build_task(self, cfg: Any, trial: int, data_root: str | None, raw: RawData | None = None) -> Task:
        raw = raw if raw is not None else self.load_raw(data_root)
        manifest = self.make_manifest(raw, cfg, trial)
        return Task(
            scenario=self.name, trial=trial, data=raw, manifest=manifest, manifest_hash=manifest_digest(manifest),
            arch=self.arch, in_channels=self.in_channels, recipe=self.recipe, pools=dict(self.pools),
            threads=self.threads, search_baseline_lr=self.search_baseline_lr,
        )
