"""``Ctx``: everything a method may touch, and nothing else.

A method gets the splits it declared (never test), the original weights and recipe, the
shared fine-tune pool (streamed from the store), the shared training loop, generators seeded
from the trial, and the selection helpers that run the harness's named rule
(``unlearnbench.selection``). Artifacts are produced by ``Stages``.

The door is narrow by construction: the task and the stages are stored under name-mangled
attributes (``self.__stages`` is ``_Ctx__stages`` on the instance), so ``ctx.task``,
``ctx._task`` or ``ctx._stages`` are not attributes at all, and asking for them, or for any
other name ctx does not define, raises ``SplitAccessError`` saying what to use instead.
(Python hides nothing from code that spells out ``ctx._Ctx__task``; that is deliberate
circumvention, not reaching around by accident, and no built-in does it.)
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NoReturn, Sequence

from .errors import SplitAccessError
from .selection import Selection, grid, search, sweep

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from .config import PoolConfig, SelectionCommon
    from .ensemble.replay import Replay
    from .method import Method
    from .recipe import Recipe
    from .selection import SelectionRule
    from .stages import Stages

INSTEAD = ("ctx.data(split) for a declared split, ctx.original() / ctx.new_model() for θ_0, ctx.recipe for the "
           "original's recipe, ctx.num_classes, ctx.rng(key) for seeded randomness, ctx.train() for the loop, "
           "ctx.select() / ctx.search() for the run's rule")


class Ctx:
    def __init__(self, stages: "Stages", method: "Method", cfg: "DictConfig", rule: "SelectionRule",
                 rule_cfg: "SelectionCommon", pool_cfg: "PoolConfig", also: Sequence[tuple] = (), *,
                 run: Any = 0, replay: "Replay | None" = None):
        """``cfg`` is the method's config section, ``rule_cfg`` the selection section (the common
        keys and the rule's own options), ``pool_cfg`` the pool section: read-only OmegaConf nodes.
        ``also``: (rule, config) of each ``selection.also`` rule, which chooses on the same curves.

        ``run`` and ``replay`` serve the ensemble runs of PROTOCOL §8.7.0: ``run`` 0 is the trial's own
        run (every generator as it always was); any other run draws every generator from the ``unlearn``
        stream keyed by ("run", run) (``stream``). ``replay`` (``ensemble.replay.Replay``) freezes the
        recipe the trial-0 record chose: ``search`` builds only the chosen setting at its chosen epoch
        and ``select`` returns λ*, so nothing is searched or swept."""
        self.__stages = stages
        self.__also = tuple(also)
        self.__task = stages.task
        self.__rule = rule
        self.__rule_cfg = rule_cfg
        self.__pool_cfg = pool_cfg
        # pool.linear: the pool, and every model this ctx edits and selects on, live in θ_0's tangent space
        # (PROTOCOL §4.8); getattr: a pool section from before the key holds the standard pool
        self.__linear = bool(getattr(pool_cfg, "linear", False))
        self.trial = stages.task.trial
        self.run = run
        self.replay = replay
        self.device = stages.device
        self.method = method
        self.cfg = cfg  # the method's config section (read-only)
        self.timings: dict[str, float] = {}
        self.info: dict[str, Any] = {}
        self.touched: set[str] = set()

    # -- the narrow door ------------------------------------------------------------------
    @property
    def task(self) -> "NoReturn":
        raise SplitAccessError(f"method {self.method.name!r} asked for ctx.task; the task holds every split, test "
                               f"included, so a method never gets it. Use {INSTEAD}")

    def __getattr__(self, name: str) -> Any:
        # only reached when ordinary lookup fails: internals (the mangled ones) and typos
        if name.startswith("__") and name.endswith("__"):  # protocol probes (copy, pickle): the usual answer
            raise AttributeError(name)
        raise SplitAccessError(f"ctx has no {name!r}: a method reaches data and artifacts only through ctx's "
                               f"public interface. Use {INSTEAD}")

    # -- data ---------------------------------------------------------------------
    def data(self, split: str) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(x, y) of a declared split: forget, retain or val."""
        if split not in self.method.uses:
            raise SplitAccessError(
                f"method {self.method.name!r} asked for split {split!r} but declares only "
                f"{sorted(self.method.uses)}; add it to the method's `uses` (it shows in the Used splits column)"
            )
        self.touched.add(split)
        return self.__task.tensors(split)

    @property
    def num_classes(self) -> int:
        return self.__task.num_classes

    @property
    def recipe(self) -> "Recipe":
        """The original model's training recipe (frozen): its batch size and augmentation are the
        scenario's, which the §7 baselines reuse."""
        return self.__task.recipe

    @property
    def search_by_default(self) -> bool:
        """Whether this scenario selects a baseline's step size by the run's rule when the method's
        ``lr_search`` is ``auto`` (PROTOCOL §7.3: the CPU classifier scenarios do)."""
        return self.__task.search_baseline_lr

    def rng(self, key: str, *more: Any) -> "torch.Generator":
        """A fresh CPU generator of this trial's ``order`` stream, sub-keyed by the method's name and
        ``key`` (and ``more``): the same draws on every rerun, and a stream no other method and no
        other key shares. A key is required: with none it would be ``ctx.train``'s own stream."""
        return self.stream("order", self.method.name, key, *more)

    def stream(self, name: str, *key: Any) -> "torch.Generator":
        """A fresh CPU generator of this trial's stream ``name`` sub-keyed by ``key``. In ensemble run
        r ≠ 0 (PROTOCOL §8.7.0: U_A's runs take fresh ``unlearn``-stream run seeds) every stream a method
        draws from becomes the ``unlearn`` stream keyed by ("run", r, name, *key): disjoint from the
        trial's own draws and from every other run's, with no other seed convention."""
        from .seeding import torch_gen

        if self.run == 0:
            return torch_gen(self.trial, name, *key)
        return torch_gen(self.trial, "unlearn", "run", self.run, name, *key)

    # -- models -------------------------------------------------------------------
    def original(self) -> dict[str, "torch.Tensor"]:
        """θ_0: the original model's state dict (a fresh copy)."""
        return {k: v.clone() for k, v in self.__stages.original().items()}

    def new_model(self, state: dict | None = None) -> "torch.nn.Module":
        """A fresh model (with ``state`` loaded); with ``pool.linear`` θ_0's linearised model, whose
        state dict has the same keys (``unlearnbench.tangent.Linearized``), so that a merge that
        evaluates θ_0 + τ (Greedy) does so in the tangent space (PROTOCOL §4.8)."""
        m = self.__task.new_model()
        if state is not None:
            m.load_state_dict(state)
        if self.__linear:
            from .tangent import Linearized

            m = Linearized(m, self.__stages.original())
        return m.to(self.device)

    def retrain(self) -> dict[str, "torch.Tensor"]:
        """The retrain oracle (trained on D_r from θ_init). Only for methods that declare retain."""
        if "retain" not in self.method.uses:
            raise SplitAccessError(f"method {self.method.name!r} reads the retrain model but does not declare 'retain'")
        self.touched.add("retain")
        with self.timer("retrain_s"):
            return self.__stages.retrain()

    def param_keys(self) -> list[str]:
        return self.__stages.param_keys

    # -- the pool -------------------------------------------------------------------
    def pool(self, size: int | None = None) -> Iterator[tuple[dict, dict[str, "torch.Tensor"]]]:
        """Yield (member info, τ_i) in canonical order, one at a time (members are trained
        once and stored; a member already in the store is only loaded): the ``pool`` section's
        members (``pool.size``, ``pool.subset``), recorded in ``info["pool"]``."""
        if "forget" not in self.method.uses:
            raise SplitAccessError(f"method {self.method.name!r} uses the fine-tune pool (trained on D_f) "
                                   "but does not declare 'forget'")
        self.touched.add("forget")
        n = size if size is not None else self.__pool_cfg.size
        yield from self.__stages.pool_stream(self.__pool_cfg.name, n, self.timings, subset=str(self.__pool_cfg.subset),
                                             augment=str(self.__pool_cfg.augment), info=self.info,
                                             linear=self.__linear)

    def pool_size(self) -> int:
        grid_ = self.__stages.pool_grid(self.__pool_cfg.name)
        return min(len(grid_), self.__pool_cfg.size) if self.__pool_cfg.size else len(grid_)

    # -- training -------------------------------------------------------------------
    def train(self, model: "torch.nn.Module", x: "torch.Tensor", y: "torch.Tensor", recipe: "Recipe",
              stream: str = "order", *, loss_fn: Callable | None = None,
              after_step: Callable[[], None] | None = None, params: Iterable | None = None,
              augment: Callable | None = None, on_epoch: Callable[[int], None] | None = None,
              batches: "Sequence[Sequence[torch.Tensor]] | None" = None, paired: Any = None,
              phases: Sequence[Any] = (), before_step: Callable[[], None] | None = None) -> "torch.nn.Module":
        """The shared training loop (``unlearnbench.training.train``, which documents the hooks,
        the second loader ``paired`` and the extra ``phases``), seeded from this trial's named stream."""
        from .training import train

        gen = self.stream(stream, self.method.name)
        if augment is None:  # the scenario's named augmentations too
            augment = self.__task.augment_for(recipe)
        return train(model, x, y, recipe, gen, device=self.device, desc=f"{self.method.name}", loss_fn=loss_fn,
                     after_step=after_step, params=params, augment=augment, on_epoch=on_epoch, batches=batches,
                     paired=paired, phases=phases, before_step=before_step, amp=self.__task.amp)

    # -- applying and selecting --------------------------------------------------------
    def apply(self, tau: dict, lam: float) -> dict[str, "torch.Tensor"]:
        from .taskvec import edited_state

        return edited_state(self.__stages.original(), tau, lam)

    def select(self, tau: dict, lambdas: list[float] | None = None) -> Selection:
        """Choose λ for θ_0 − λτ with the run's selection rule, on the rule's splits only, visiting
        the grid as ``selection.strategy`` says (``unlearnbench.selection.sweep``). With ``pool.linear``
        the edit is f_lin(θ_0 − λτ), whose logits are affine in λ: one jvp per split gives every λ
        (``tangent.TangentLine``, PROTOCOL §4.8) instead of a forward per λ. Replaying a record
        (``replay``): its λ*, nothing swept."""
        if self.replay is not None:
            return self.replay.selection()

        rule, rcfg, task = self.__rule, self.__rule_cfg, self.__task
        set_lambda, measure = self._edit(tau)
        allowed = frozenset(rule.reads_for(rcfg, task))
        reference = self.__stages.reference(rule.needs(rcfg, task)) if "retrain" in allowed else None
        sel = sweep(set_lambda, measure,
                    lambdas if lambdas is not None else grid(rcfg.grid, task.grids), rule, rcfg, task, reference,
                    allowed, task.scoring.metric_splits, strategy=getattr(rcfg, "strategy", "grid"),
                    also=self._also_uses())
        self.timings["select_s"] = self.timings.get("select_s", 0.0) + sel.seconds
        self.timings["select_evals"] = self.timings.get("select_evals", 0) + sel.evals
        return sel

    def _edit(self, tau: dict, affine: bool = True) -> tuple[Callable[[float], None], Callable[..., dict]]:
        """(set λ, measure(names, cache)) of θ_0 − λτ: weights set in place (``InPlaceEditor``), or for a
        linear pool the tangent line (``affine``; False: f_lin forwarded at each λ, as a plain sweep)."""
        evaluator = self.__stages.evaluator
        model = self.new_model(self.__stages.original())
        if self.__linear and affine:
            from .tangent import TangentLine

            line = TangentLine(model, tau, self.device)
            return line.set, lambda names, cache=None: evaluator.measure(model, names, cache, logits_of=line.logits)
        from .taskvec import InPlaceEditor

        editor = InPlaceEditor(model, self.__stages.original(), tau)
        return editor.set, lambda names, cache=None: evaluator.measure(model, names, cache)

    def _also_uses(self) -> list:
        """The ``selection.also`` rules as ``RuleUse``s: each with Retrain measured on its own metrics."""
        from .selection import RuleUse

        task, out = self.__task, []
        for rule, cfg in self.__also:
            reads = frozenset(rule.reads_for(cfg, task))
            ref = self.__stages.reference(rule.needs(cfg, task)) if "retrain" in reads else None
            out.append(RuleUse(rule, cfg, ref, reads))
        return out

    def search(self, candidates: list[dict], build: Callable[[dict], Any], *, null: dict | None = None,
               extend: str | None = None) -> tuple[dict, Selection]:
        """Choose a hyperparameter setting with the run's selection rule (PROTOCOL §7.3;
        ``unlearnbench.selection.search``): ``build(candidate)`` returns the unlearned state dict
        of one setting, or the list of its states after each epoch (then (setting, epoch) is chosen
        jointly); each is measured here, on the rule's splits only, against θ_0 as the baseline.
        ``null`` (the keys of "no update", e.g. ``{"lr": 0.0}``) makes θ_0 a point of the search,
        returned when nothing else is feasible; ``extend`` names the key whose grid grows by
        half-decades at a chosen end (the v2 search, §7.3 steps 3–5; see ``selection.search``).

        The settings are jobs of the run's executor (``-o executor=...``): with ``processes`` or
        ``ray`` they train in parallel, each in a worker that holds a detached ctx (``Ctx.__reduce__``),
        and their ``ctx.info`` entries are merged back in candidate order. A setting that fails twice is
        recorded with its error and never chosen.

        Replaying a record (``replay``): only the recorded choice is built, and its chosen epoch taken
        (θ_0 where the record chose the null point), so nothing is searched (PROTOCOL §8.7.0)."""
        if self.replay is not None:
            return self.replay.search(build, self.original)
        rule, rcfg, task = self.__rule, self.__rule_cfg, self.__task
        allowed = frozenset(rule.reads_for(rcfg, task))
        reference = self.__stages.reference(rule.needs(rcfg, task)) if "retrain" in allowed else None
        model = self.new_model(self.__stages.original())  # θ_0: the baseline is measured on it first
        state, sel = search(candidates, build, model.load_state_dict,
                            lambda names, cache=None: self.__stages.evaluator.measure(model, names, cache),
                            rule, rcfg, task,
                            reference, allowed, task.scoring.metric_splits,
                            build_all=lambda cs: self._build_all(cs, build),  # extension rounds too
                            null=null, original=self.original, extend=extend,
                            also=self._also_uses() if null is not None else ())
        self.timings["search_s"] = self.timings.get("search_s", 0.0) + sel.seconds
        self.timings["search_evals"] = self.timings.get("search_evals", 0) + sel.evals
        return state, sel

    def _build_all(self, candidates: list[dict], build: Callable[[dict], dict]) -> list:
        from .executor import Job
        from .selection import BuildFailed
        from .seeding import canonical_json

        ex = self.__stages.executor
        jobs = [Job(canonical_json(c), build, (c,), label=f"{self.method.name} {c}") for c in candidates]
        outcomes = ex.run(jobs, desc=f"search {self.method.name} ({ex.name})", unit="setting")
        out: list = []
        for o in outcomes:  # in candidate order, as a one-by-one run would have written them
            for books in o.books:
                self.merge_bookkeeping(books)
            out.append(o.value if o.ok else BuildFailed(str(o.error)))
        return out

    # -- crossing to a worker ---------------------------------------------------------------
    def __reduce__(self):
        """What a job that holds this ctx (a method's ``build`` closure) carries to a worker: a
        detached ctx with the method's declared splits, θ_0 and the recipe, never the task (test
        stays with the driver) nor the store (a worker returns outputs, the driver writes them)."""
        stages = self.__stages
        detached = DetachedStages.of(stages, [s for s in ("forget", "retain", "val") if s in self.method.uses])
        return _rebuild_ctx, (detached, self.method, self.cfg, self.__rule, self.__rule_cfg, self.__pool_cfg,
                              {k: _copy(v) for k, v in self.info.items()}, set(self.touched), self.__also,
                              self.run, self.replay)

    def bookkeeping(self) -> dict:
        """What a job's ctx recorded (``info``, ``timings``, ``touched``), for the driver's ctx to merge."""
        return {"info": self.info, "timings": self.timings, "touched": sorted(self.touched)}

    def merge_bookkeeping(self, books: dict) -> None:
        """Merge a job's bookkeeping: nested info dicts key by key, timings summed. Merged in job order,
        this gives what running the jobs here one after another would have written."""
        _merge_info(self.info, books["info"])
        for k, v in books["timings"].items():
            self.timings[k] = self.timings.get(k, 0.0) + v
        self.touched |= set(books["touched"])

    # -- bookkeeping ----------------------------------------------------------------------
    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


def _copy(v: Any) -> Any:
    import copy

    return copy.deepcopy(v)


def _merge_info(into: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge_info(into[k], v)
        else:
            into[k] = v


def _rebuild_ctx(stages: "DetachedStages", method, cfg, rule, rule_cfg, pool_cfg, info, touched,
                 also=(), run=0, replay=None) -> "Ctx":
    from .executor import register_context

    ctx = Ctx(stages, method, cfg, rule, rule_cfg, pool_cfg, also, run=run, replay=replay)  # type: ignore[arg-type]
    ctx.info.update(info)
    ctx.touched |= touched
    register_context(ctx)
    return ctx


class DetachedStages:
    """The part of ``Stages`` a job may use in a worker: the task cut down to the method's declared
    splits (``Task.detached``), θ_0 and the parameter names. Everything that reads the store or another
    split (the pool, the retrain model, λ selection, a search inside the job) stays with the driver."""

    def __init__(self, task, theta0: dict, device: str, param_keys: list[str]):
        self.task = task
        self._theta0 = theta0
        self.device = device
        self.param_keys = param_keys

    @classmethod
    def of(cls, stages, splits: list[str]) -> "DetachedStages":
        return cls(stages.task.detached(splits), stages.original(), stages.device, stages.param_keys)

    def original(self) -> dict:
        return self._theta0

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise SplitAccessError(f"this ctx is a worker's copy, inside a job an executor runs (a search candidate's "
                               f"build), and {name.lstrip('_')!r} lives with the driver: ctx.pool(), ctx.retrain(), "
                               "ctx.select() and ctx.search() work in the method's unlearn(), not inside a build, "
                               "which may use ctx.data(), ctx.original(), ctx.new_model(), ctx.train(), ctx.rng(), "
                               "ctx.apply() and ctx.cfg. Do that work before the search (Baseline.prepare)")
