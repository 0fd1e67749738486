"""Training recipes and pool grids as data (PROTOCOL §2.1, §6)."""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


LATE_FIELDS = ("randaug_n", "randaug_m", "warmup_steps", "grad_clip", "warmup_epochs")


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch: int
    lr: float
    momentum: float = 0.9
    wd: float = 5e-4
    # cosine: to 0, stepped per batch | constant | multistep | triangular, cosine_epoch: set per epoch (§7.4.4)
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()  # epochs at which multistep multiplies lr by 0.1
    label_smoothing: float = 0.0
    optimizer: str = "sgd"  # sgd | adamw | adam
    augment: str = "none"  # name of a train-time augmentation the scenario knows
    randaug_n: int = 0  # RandAugment ops per image (0 = off) [PROTOCOL §6.1]
    randaug_m: int = 0  # RandAugment magnitude
    warmup_steps: int = 0  # linear warmup before the schedule (CLIP: 500) [PROTOCOL §2.2]
    grad_clip: float = 0.0  # gradient-norm clip (CLIP: 1.0); 0 = off
    # linear warmup of this many epochs (Swin-T: 2) [PROTOCOL §2.1]: in epochs, so that the original
    # (on D_train) and Retrain (on the smaller D_r) warm up over the same fraction of their schedule
    warmup_epochs: int = 0

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
    # the augmentation protocol 1 trained this pool with, where v2 changed it (PROTOCOL §6.3: the CPU
    # pools had none); None = the same as ``base.augment``. ``pool.augment=v1`` trains it so.
    v1_augment: str | None = None

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

    def as_v1(self) -> "PoolGrid":
        """The pool as protocol 1 trained it (``pool.augment=v1``): the same grid, v1's augmentation."""
        if self.v1_augment is None or self.v1_augment == self.base.augment:
            return self
        return replace(self, base=self.base.with_(augment=self.v1_augment), v1_augment=None)

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
                    source: str = "", v1_augment: str | None = None) -> PoolGrid:
    """The 3x3x3 classifier pool of PROTOCOL §6.3: SGD momentum 0.9, constant lr; ``v1_augment``:
    protocol 1's augmentation where v2 changed it."""
    base = Recipe(epochs=epochs[0], batch=batch, lr=lr, schedule="constant", augment=augment)
    return PoolGrid(name, base, (("epochs", epochs), ("wd", WD_GRID), ("label_smoothing", LS_GRID)), source,
                    v1_augment=v1_augment)


def subset_indices(n_pool: int, size: int, draw: int, trial: int, pool: str) -> list[int]:
    """Draw ``draw`` (0, 1, 2, ...) of the distinct random size-``size`` subsets of a pool of ``n_pool``
    members, as indices in canonical order (PROTOCOL §9.5 v2: the n-ablation merges 3 random subsets
    per n, not one nested prefix). Drawn from the trial's `pool` stream, keyed by the pool and n, so
    draw d is the same whichever other draws run; draws 0..d are distinct subsets (a repeat is
    redrawn), so there must be more than d of them."""
    import math

    from .errors import ConfigError
    from .seeding import numpy_rng

    if size >= n_pool:
        if draw:
            raise ConfigError(f"pool.subset={draw}: with pool.size={size} (the whole pool of {n_pool}) there is "
                              "one subset only, draw 0")
        return list(range(n_pool))
    if draw >= math.comb(n_pool, size):
        raise ConfigError(f"pool.subset={draw}: pool {pool!r} has only {math.comb(n_pool, size)} distinct subsets "
                          f"of {size} members (draws 0 to {math.comb(n_pool, size) - 1})")
    rng = numpy_rng(trial, "pool", "subset", pool, size)
    seen: list[tuple[int, ...]] = []
    while len(seen) <= draw:
        s = tuple(sorted(int(i) for i in rng.choice(n_pool, size=size, replace=False)))
        if s not in seen:
            seen.append(s)
    return list(seen[draw])


