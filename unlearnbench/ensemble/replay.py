"""The frozen recipe of an ensemble run (PROTOCOL §8.7.0, "Recipes are frozen").

An ensemble run of method A replays what the trial-0 record chose, with a fresh run seed: the
hyperparameters and epoch its §7.3 search chose (θ_0 where it chose the null point), or the λ* its λ
sweep chose, and the pool member a single-best method chose (``Method.replay_pool``). It never re-runs
the search or the sweep: that would multiply the cost by about 9 per run, and the metric asks about the
algorithm at its chosen setting. ``Ctx`` consults a ``Replay`` in ``search`` and ``select``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..selection import Selection

RULE = "replay"  # the rule name a replayed Selection carries: no rule chose anything in this run


@dataclass(frozen=True)
class Replay:
    source: str  # the record replayed (its path), for messages
    lam: float | None = None  # λ* of a λ sweep
    chosen: dict | None = None  # the setting a hyperparameter search chose, with its "epoch" when it chose one
    pool_members: tuple[int, ...] | None = None  # the pool indices the run streams (None: the config's)

    def spec(self) -> dict:
        """What defines the replayed recipe, for ensemble member keys."""
        return {"lambda": self.lam, "chosen": self.chosen,
                "pool_members": list(self.pool_members) if self.pool_members is not None else None}

    def _selection(self, lam: float, params: dict) -> "Selection":
        from ..selection import Selection

        return Selection(rule=RULE, oracle=False, lam=lam, score=math.nan, index=0, curve=[], evals=0,
                         seconds=0.0, grid_edge=False, params={"search": RULE, **params})

    def selection(self) -> "Selection":
        """``ctx.select``: λ* as recorded, nothing swept."""
        if self.lam is None:
            raise ConfigError(f"{self.source} records no λ*, but the method selects one: the record is not of "
                              "this method's configuration")
        return self._selection(float(self.lam), {"lambda": float(self.lam)})

    def search(self, build: Callable[[dict], Any], original: Callable[[], dict]) -> tuple[dict, "Selection"]:
        """``ctx.search``: the recorded setting built once, at its recorded epoch (v2: ``build`` returns the
        state after each epoch; epoch 0 is θ_0, the null point, and nothing is built)."""
        if self.chosen is None:
            raise ConfigError(f"{self.source} records no chosen setting, but the method searches one: the record "
                              "is not of this method's configuration")
        epoch = self.chosen.get("epoch")
        setting = {k: v for k, v in self.chosen.items() if k != "epoch"}
        if epoch == 0:
            state = original()
        else:
            out = build(dict(setting))
            if isinstance(out, (list, tuple)):
                if epoch is None or not 1 <= int(epoch) <= len(out):
                    raise ConfigError(f"{self.source} chose epoch {epoch}, but the setting {setting} trains "
                                      f"{len(out)} epochs")
                state = out[int(epoch) - 1]
            else:
                state = out
        return state, self._selection(math.nan, {"chosen": dict(self.chosen)})


def from_record(record: dict, method: Any, source: str = "") -> Replay:
    """The recipe ``record`` (a run.json) chose, for ``method`` (its ``Method``)."""
    sel = record.get("selection") or {}
    chosen = (sel.get("params") or {}).get("chosen")
    lam = record.get("lambda")
    lam = None if lam is None or (isinstance(lam, float) and math.isnan(lam)) else float(lam)
    pool = method.replay_pool(record)
    return Replay(source=source or str(record.get("_file") or "the record"), lam=lam,
                  chosen=dict(chosen) if chosen is not None else None,
                  pool_members=tuple(int(i) for i in pool) if pool is not None else None)
