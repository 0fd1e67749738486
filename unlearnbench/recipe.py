"""Training recipes and pool grids as data (PROTOCOL §2.1, §6)."""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace
from typing import Any


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

    def spec(self) -> dict:
        return asdict(self)

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

    def members(self) -> list[Recipe]:
        names = [c for c, _ in self.columns]
        return [self.base.with_(**dict(zip(names, vals))) for vals in itertools.product(*(v for _, v in self.columns))]

    def __len__(self) -> int:
        n = 1
        for _, v in self.columns:
            n *= len(v)
        return n

    def describe(self) -> dict:
        return {"name": self.name, "base": self.base.spec(), "columns": [[c, list(v)] for c, v in self.columns],
                "n": len(self), "source": self.source}


SGD_POOL_COLUMNS = ("epochs", "wd", "label_smoothing")
WD_GRID = (1e-4, 5e-5, 1e-5)
LS_GRID = (0.0, 0.05, 0.1)


def classifier_pool(name: str, lr: float, batch: int, epochs: tuple[int, ...], augment: str = "none",
                    source: str = "") -> PoolGrid:
    """The 3x3x3 classifier pool of PROTOCOL §6.3: SGD momentum 0.9, constant lr."""
    base = Recipe(epochs=epochs[0], batch=batch, lr=lr, schedule="constant", augment=augment)
    return PoolGrid(name, base, (("epochs", epochs), ("wd", WD_GRID), ("label_smoothing", LS_GRID)), source)


