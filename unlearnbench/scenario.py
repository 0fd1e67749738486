"""Scenarios and the Task they build for one trial.

A scenario owns the data, ONE fixed index manifest per (scenario, trial) (PROTOCOL §1.2),
the model factory and the recipes. It never knows which method runs.

Two families share this interface. ``ClassifierScenario`` (digits, Fashion-MNIST,
CIFAR-10/CUB/Tiny ImageNet) trains its own original model and has a retrain oracle. The CLIP
dataset-negation scenarios (PROTOCOL §1.3, scenarios/clip.py) subclass ``Scenario`` directly: their
``original`` is a pretrained zero-shot encoder (``Task.original_source = "pretrained"``),
``Task.has_oracle`` is False (no Retrain, so no Avg. Gap), the manifest carries named splits
(``forget_train``, ``forget_val``, ``forget_test``, ``control_val``, ``control_test``, whose
access roles are in ``unlearnbench.evaluate.SPLIT_ROLE``), ``Task.report`` lists the splits
whose accuracy is reported (``forget_test`` = Acc D_f, ``control_test`` = Acc D_r, §8.4),
``Task.mia`` is False, a ``control_threshold`` rule reads ``acc_forget_val`` and
``acc_control_val``, the pool trains on ``forget_train``, and ``Task.frozen`` names the
parameters that stay in τ as exact zeros (attention, text leftovers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .data import data_roots, fingerprint  # noqa: F401  scenarios/clip.py imports them from here until it moves
from .errors import ConfigError
from .recipe import PoolGrid, Recipe
from .seeding import numpy_rng, sha256_hex, stream_seed

if TYPE_CHECKING:
    import torch


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
    kind: str = "classifier"
    has_oracle: bool = True
    original_source: str = "train"  # "train" (from θ_init on D_train) or "pretrained" (CLIP)
    report: tuple[str, ...] = ("retain", "forget", "test", "val")  # splits whose accuracy every run reports
    mia: bool = True  # MIA-efficacy is reported (classifiers); CLIP reports accuracies only (§8.4)
    frozen: tuple[str, ...] = ()  # parameter names that stay 0 in τ (CLIP attention)
    search_baseline_lr: bool = False  # PROTOCOL §7.3: CPU scenarios select baseline lrs by rule (c)
    # Pretrained classifier scenarios (CUB-200): returns (weights, tag) where weights are loaded over
    # the init-stream draw (the backbone; the head stays drawn) and tag identifies them in store keys.
    pretrained: "Callable[[], tuple[dict, str]] | None" = None

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
        split of a classifier; CLIP switches between its forget and control heads."""

    def new_model(self):
        from .models import build_model

        return build_model(self.arch, self.num_classes, self.in_channels)


class Scenario:
    """Base of every scenario plugin. Subclasses set ``name`` and implement ``build_task``."""

    name: str = ""
    description: str = ""
    Config: type | None = None
    suite_defaults: dict = {}

    def build_task(self, cfg: Any, trial: int, data_root: str | None) -> Task:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:
        return self.description


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

    def __init__(self, name: str, forget: str, pct: float = 10.0):
        if forget not in ("random", "class"):
            raise ValueError(f"forget must be 'random' or 'class', not {forget!r}")
        self.name = name
        self.forget = forget
        self.Config = random_forget_config(pct) if forget == "random" else ClassForgetConfig
        what = f"{pct:g}% random" if forget == "random" else "class-wise (class 0)"
        self.description = f"{self.title}, {what} forgetting"

    family: str = ""
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

    def load_raw(self, data_root: str | None) -> RawData:  # pragma: no cover
        raise NotImplementedError

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
            scenario=self.name, trial=trial, data=raw, manifest=manifest, manifest_hash=sha256_hex(manifest),
            arch=self.arch, in_channels=self.in_channels, recipe=self.recipe, pools=dict(self.pools),
            threads=self.threads, search_baseline_lr=self.search_baseline_lr,
        )
