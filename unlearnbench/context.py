"""``Ctx``: everything a method may touch, and nothing else.

A method gets the splits it declared (never test), the original weights, the shared
fine-tune pool (streamed from the store), the shared training loop, and the selection
helper that runs the harness's named rule. Artifacts are produced by ``Stages``.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .errors import SplitAccessError, StoreError
from .selection import Selection, grid, sweep

if TYPE_CHECKING:
    import torch

    from .stages import Stages


class Ctx:
    def __init__(self, stages: "Stages", method: Any, cfg: Any, rule: Any, rule_cfg: Any, pool_cfg: Any):
        self._stages = stages
        self.task = stages.task
        self.trial = stages.task.trial
        self.device = stages.device
        self.method = method
        self.cfg = cfg  # the method's config section (read-only)
        self._rule = rule
        self._rule_cfg = rule_cfg
        self._pool_cfg = pool_cfg
        self.timings: dict[str, float] = {}
        self.info: dict[str, Any] = {}
        self.touched: set[str] = set()

    # -- data ---------------------------------------------------------------------
    def data(self, split: str) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(x, y) of a declared split: forget, retain or val."""
        if split not in self.method.uses:
            raise SplitAccessError(
                f"method {self.method.name!r} asked for split {split!r} but declares only "
                f"{sorted(self.method.uses)}; add it to the method's `uses` (it shows in the Used splits column)"
            )
        self.touched.add(split)
        return self.task.tensors(split)

    @property
    def num_classes(self) -> int:
        return self.task.num_classes

    # -- models -------------------------------------------------------------------
    def original(self) -> dict[str, "torch.Tensor"]:
        """θ_0: the original model's state dict (a fresh copy)."""
        return {k: v.clone() for k, v in self._stages.original().items()}

    def new_model(self, state: dict | None = None) -> "torch.nn.Module":
        m = self.task.new_model()
        if state is not None:
            m.load_state_dict(state)
        return m.to(self.device)

    def retrain(self) -> dict[str, "torch.Tensor"]:
        """The retrain oracle (trained on D_r from θ_init). Only for methods that declare retain."""
        if "retain" not in self.method.uses:
            raise SplitAccessError(f"method {self.method.name!r} reads the retrain model but does not declare 'retain'")
        self.touched.add("retain")
        with self.timer("retrain_s"):
            return self._stages.retrain()

    def param_keys(self) -> list[str]:
        return self._stages.param_keys

    # -- the pool -------------------------------------------------------------------
    def pool(self, size: int | None = None) -> Iterator[tuple[dict, dict[str, "torch.Tensor"]]]:
        """Yield (member info, τ_i) in canonical order, one at a time (members are trained
        once and stored; a member already in the store is only loaded)."""
        if "forget" not in self.method.uses:
            raise SplitAccessError(f"method {self.method.name!r} uses the fine-tune pool (trained on D_f) "
                                   "but does not declare 'forget'")
        self.touched.add("forget")
        n = size if size is not None else self._pool_cfg.size
        yield from self._stages.pool_stream(self._pool_cfg.name, n, self.timings)

    def pool_size(self) -> int:
        grid_ = self._stages.pool_grid(self._pool_cfg.name)
        return min(len(grid_), self._pool_cfg.size) if self._pool_cfg.size else len(grid_)

    # -- training -------------------------------------------------------------------
    def train(self, model: "torch.nn.Module", x, y, recipe, stream: str = "order", **kw: Any):
        """The shared training loop, seeded from this trial's named stream."""
        from .seeding import torch_gen
        from .training import train

        gen = torch_gen(self.trial, stream, self.method.name)
        return train(model, x, y, recipe, gen, device=self.device, desc=f"{self.method.name}", **kw)

    # -- applying and selecting λ --------------------------------------------------------
    def apply(self, tau: dict, lam: float) -> dict[str, "torch.Tensor"]:
        from .taskvec import edited_state

        return edited_state(self._stages.original(), tau, lam)

    def select(self, tau: dict, lambdas: list[float] | None = None) -> Selection:
        """Choose λ for θ_0 − λτ with the run's selection rule, on the rule's splits only."""
        from .taskvec import InPlaceEditor

        rule, rcfg = self._rule, self._rule_cfg
        model = self.new_model(self._stages.original())
        editor = InPlaceEditor(model, self._stages.original(), tau)
        allowed = rule.reads_for(rcfg, self.task)
        reference = self._stages.retrain_metrics() if "retrain" in allowed else None
        sel = sweep(editor.set, lambda names: self._stages.evaluator.measure(model, names),
                    lambdas if lambdas is not None else grid(rcfg.grid), rule, rcfg, self.task, reference,
                    frozenset(allowed), self.task.scoring.metric_splits)
        self.timings["select_s"] = self.timings.get("select_s", 0.0) + sel.seconds
        self.timings["select_evals"] = self.timings.get("select_evals", 0) + sel.evals
        return sel

    def search(self, candidates: list[dict], build: Callable[[dict], dict]) -> tuple[dict, Selection]:
        """Choose a hyperparameter setting with the run's selection rule (PROTOCOL §7.3).

        ``build(candidate)`` returns the unlearned state dict for one setting (it trains);
        each is measured on the rule's splits only, against θ_0 as the baseline. The grid,
        every candidate's metrics and the choice are recorded in the run."""
        rule, rcfg = self._rule, self._rule_cfg
        allowed = frozenset(rule.reads_for(rcfg, self.task))
        needs = rule.needs(rcfg, self.task)
        for m in needs:
            if self.task.scoring.metric_splits(m) - allowed:
                raise SplitAccessError(f"selection rule {rule.name!r} asks for {m!r} beyond {sorted(allowed)}")
        reference = self._stages.retrain_metrics() if "retrain" in allowed else None
        t0 = time.perf_counter()
        model = self.new_model(self._stages.original())
        baseline = self._stages.evaluator.measure(model, needs)
        import torch

        curve, states, valid = [], [], []
        for cand in candidates:
            state = build(dict(cand))
            if all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
                model.load_state_dict(state)
                curve.append({**cand, **self._stages.evaluator.measure(model, needs)})
                valid.append(len(states))
            else:  # a diverged setting is rejected, never scored (as a non-finite pool member, §3)
                curve.append({**cand, "non_finite": True})
            states.append(state)
        if not valid:
            raise StoreError(f"every setting of the search diverged (non-finite weights): {candidates}")
        scored = [curve[i] for i in valid]
        j, score = rule.choose(scored, rcfg, self.task, reference, baseline)
        idx = valid[j]
        ok = rule.feasible(scored, rcfg, self.task, baseline)
        feasible = [False] * len(curve)
        for i, f in zip(valid, ok):
            feasible[i] = f
        sel = Selection(rule.name, rule.oracle, float("nan"), float(score), idx, curve, len(curve),
                        time.perf_counter() - t0, False,
                        {"grid": candidates, "chosen": candidates[idx], "baseline": baseline,
                         "feasible": feasible, "none_feasible": not any(feasible)})
        sel.grid_edge = len(candidates) > 1 and idx in (0, len(candidates) - 1)
        self.timings["search_s"] = self.timings.get("search_s", 0.0) + sel.seconds
        self.timings["search_evals"] = self.timings.get("search_evals", 0) + len(curve)
        return states[idx], sel

    # -- bookkeeping ----------------------------------------------------------------------
    @contextmanager
    def timer(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0
