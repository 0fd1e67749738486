"""The Method base class and the result a method returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .context import Ctx

VALID_SPLITS = frozenset({"forget", "retain", "val"})


@dataclass
class Result:
    """What ``Method.unlearn`` returns."""

    state: dict[str, "torch.Tensor"]  # the unlearned model's full state dict (same keys as θ_0)
    lam: float | None = None  # λ*, for methods that scale a task vector
    selection: Any = None  # unlearnbench.selection.Selection, when a rule chose a hyperparameter
    merged: dict[str, "torch.Tensor"] | None = None  # the merged task vector, for sparsity
    info: dict = field(default_factory=dict)  # anything else worth recording in run.json


class Method:
    """Base of every method plugin.

    Subclasses set ``name`` (what users type), ``uses`` (the data the method itself reads:
    a subset of forget / retain / val; the paper's "Used splits" column) and implement
    ``unlearn(ctx)``. ``ctx`` hands out only the declared splits and never test data.
    """

    name: str = ""
    description: str = ""
    reference_url: str = ""
    uses: frozenset[str] = frozenset()
    needs_pool: bool = False
    selects: bool = True  # whether a selection rule chooses a hyperparameter (adds its splits)
    Config: type | None = None
    suite_defaults: dict = {}

    def unlearn(self, ctx: "Ctx") -> Result:  # pragma: no cover
        raise NotImplementedError

    def validate_definition(self) -> None:
        extra = set(self.uses) - VALID_SPLITS
        if extra:
            raise ValueError(f"declares unknown splits {sorted(extra)}; methods may use {sorted(VALID_SPLITS)}")
        if not callable(getattr(self, "unlearn", None)):
            raise ValueError("has no unlearn(ctx)")


class MergeMethod(Method):
    """A method that merges the shared fine-tune pool into one τ, then selects λ.

    Subclasses implement ``reducer(cfg)``, returning an object with ``update(tau)`` and
    ``result()`` (a streaming reducer: O(1) models in memory whatever the pool size).
    """

    uses = frozenset({"forget"})
    needs_pool = True

    def reducer(self, cfg: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def unlearn(self, ctx: "Ctx") -> Result:
        import time

        red = self.reducer(ctx.cfg)
        t0, pool0 = time.perf_counter(), ctx.timings.get("pool_s", 0.0)
        for _, tau in ctx.pool():
            red.update(tau)
        merged = red.result()
        # merge wall time includes loading members, not training the ones missing from the store
        ctx.timings["merge_wall_s"] = time.perf_counter() - t0 - (ctx.timings.get("pool_s", 0.0) - pool0)
        sel = ctx.select(merged)
        return Result(ctx.apply(merged, sel.lam), lam=sel.lam, selection=sel, merged=merged)
