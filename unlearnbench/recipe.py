"""Training recipes and pool grids as data (PROTOCOL §2.1, §6)."""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


LATE_FIELDS = ("randaug_n", "randaug_m", "warmup_steps", "grad_clip")


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch: int
    lr: float
    momentum: float = 0.9
    wd: float = 5e-4
    schedule: str = "cosine"  # cosine: to 0, stepped per batch | constant | multistep
    milestones: tuple[int, ...] = ()  # epochs at which multistep multiplies lr by 0.1
    label_smoothing: float = 0.0
    optimizer: str = "sgd"
    augment: str = "none"  # name of a train-time augmentation the scenario knows
    randaug_n: int = 0  # RandAugment ops per image (0 = off) [PROTOCOL §6.1]
    randaug_m: int = 0  # RandAugment magnitude
    warmup_steps: int = 0  # linear warmup before the schedule (CLIP: 500) [PROTOCOL §2.2]
    grad_clip: float = 0.0  # gradient-norm clip (CLIP: 1.0); 0 = off

    def spec(self) -> dict:
        """The recipe as a store key part. Fields added later are keyed only when they differ
        from their default, so adding a field never invalidates artifacts already stored."""
        d = asdict(self)
        for f in fields(self):
            if f.name in LATE_FIELDS and d[f.name] == f.default:
                del d[f.name]
        return d

    def with_(self, **kw: Any) -> "Recipe":
        return replace(self, **kw)


@dataclass(frozen=True)
class PoolGrid:
    """A named pool: a base recipe and a grid whose canonical order is the Cartesian product of
    the columns, leftmost outermost (PROTOCOL §6). A pool is exactly its listed configs."""

    name: str
    base: Recipe
    columns: tuple[tuple[str, tuple[Any, ...]], ...]
    source: str = ""
    draw: int = 0  # > 0: use this many configs drawn without replacement from the `pool` stream (pool7)

    def grid(self) -> list[Recipe]:
        names = [c for c, _ in self.columns]
        return [self.base.with_(**dict(zip(names, vals))) for vals in itertools.product(*(v for _, v in self.columns))]

    def members(self, trial: int = 0) -> list[Recipe]:
        """The pool in canonical order (for a drawn pool: the drawn configs, in grid order)."""
        full = self.grid()
        if not self.draw:
            return full
        from .seeding import numpy_rng

        picked = numpy_rng(trial, "pool", "draw", self.name).choice(len(full), size=self.draw, replace=False)
        return [full[i] for i in sorted(picked)]

    def __len__(self) -> int:
        if self.draw:
            return self.draw
        n = 1
        for _, v in self.columns:
            n *= len(v)
        return n



WD_GRID = (1e-4, 5e-5, 1e-5)
LS_GRID = (0.0, 0.05, 0.1)


def classifier_pool(name: str, lr: float, batch: int, epochs: tuple[int, ...], augment: str = "none",
                    source: str = "") -> PoolGrid:
    """The 3x3x3 classifier pool of PROTOCOL §6.3: SGD momentum 0.9, constant lr."""
    base = Recipe(epochs=epochs[0], batch=batch, lr=lr, schedule="constant", augment=augment)
    return PoolGrid(name, base, (("epochs", epochs), ("wd", WD_GRID), ("label_smoothing", LS_GRID)), source)


