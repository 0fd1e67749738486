"""Retrain: the exact-unlearning oracle, trained on D_r from the original's θ_init with the
original's recipe (PROTOCOL §2.1, §7 [SAL]). It is the reference every Avg. Gap is measured against."""
from __future__ import annotations

from unlearnbench import Method, Result, hookimpl


class Retrain(Method):
    name = "retrain"
    description = "ORACLE: retrain from the original's initial weights on D_r, same recipe"
    reference_url = "https://arxiv.org/abs/2310.12508"
    uses = frozenset({"retain"})
    oracle = True  # the reference of every Avg. Gap: shown as the Retrain row, never ranked
    selects = False

    def unlearn(self, ctx) -> Result:
        return Result(ctx.retrain())


@hookimpl
def register_methods(register):
    register(Retrain())
