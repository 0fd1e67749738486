"""What the training-based baselines of PROTOCOL §7 share: their recipe, the §7.3 search of
their step size, random labels, and state-dict helpers.

Common settings [SAL]: SGD momentum 0.9, wd 5e-4, constant lr, the scenario's batch, BN in
train mode, the last iterate; the loop itself is the core's (``ctx.train``). Under the v2
search (§7.3) the rule also chooses the epoch, so the returned iterate is the chosen one.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from unlearnbench import Choice, ConfigError, Method, Recipe, Result, opt

if TYPE_CHECKING:
    import torch

LR_FACTORS = (1 / 10, 1 / 3, 1.0, 3.0, 10.0)  # v1: {b/10, b/3, b, 3b, 10b} PROTOCOL §7.3, §10.2 #36
V2_EXPONENTS = range(-4, 3)  # v2: b·10^(k/2), k = −4…+2, seven points b/100 … 10b [OURS] PROTOCOL §7.3


class LrSearch(Choice):
    auto = "auto"
    on = "on"  # `-o method.lr_search=on`/`off` arrive as YAML booleans; the config reads them back as words
    off = "off"


class SearchGrid(Choice):
    v2 = "v2"  # PROTOCOL §7.3 v2: the half-decade grid, (value, epoch), θ_0 as the null point, edge extension
    v1 = "v1"  # protocol 1: five points {b/10, b/3, b, 3b, 10b}, last epoch; reproduces v1 records


def lr_search_opt() -> Any:
    return opt(LrSearch.auto, "select the step size (and, for the iterative methods, the epoch) by the run's rule "
               "over the method.search_grid grid: auto = on the CPU classifier scenarios (digits, fmnist) only, "
               "on = always, off = never", "[OURS] PROTOCOL §7.3, §10.2 #36")


def search_grid_opt() -> Any:
    return opt(SearchGrid.v2, "v2: b·10^(k/2) for k = -4..2 plus §7's named values, (value, epoch) chosen jointly, "
               "θ_0 as the null point, edge extension | v1: {b/10, b/3, b, 3b, 10b}, last epoch (protocol 1)",
               "[OURS] PROTOCOL §7.3, §10.2 #36")


def search_active(ctx) -> bool:
    mode = LrSearch.of(ctx.cfg.lr_search, "method.lr_search")
    if mode != LrSearch.auto:
        return mode == LrSearch.on
    return ctx.search_by_default  # the scenario says (§7.3)


def search_v2(ctx) -> bool:
    """Whether this run searches with the §7.3 v2 search (else v1's five points, or no search)."""
    return search_active(ctx) and SearchGrid.of(ctx.cfg.search_grid, "method.search_grid") == SearchGrid.v2


def _g(v: float) -> float:
    return float(f"{v:.6g}")


def scaled_grid(base: float) -> list[float]:
    """The v1 grid {b/10, b/3, b, 3b, 10b}."""
    return [_g(base * f) for f in LR_FACTORS]


def half_decade_grid(base: float, named: tuple[float, ...] = ()) -> list[float]:
    """The v2 grid (§7.3 step 1): b·10^(k/2), k = −4…+2, plus the values §7 names as alternatives
    that lie in its span [b/100, 10b] (all of them at §7's b; a user's other b does not drag in
    values decades away, which would hide the grid's real end from the edge extension); sorted,
    without duplicates."""
    grid = {_g(base * 10 ** (k / 2)) for k in V2_EXPONENTS}
    lo, hi = min(grid), max(grid)
    return sorted(grid | {_g(v) for v in named if lo <= v <= hi})


def recipe(ctx, lr: float, epochs: int) -> Recipe:
    """PROTOCOL §7 common settings, with the scenario's batch (§7.3)."""
    return Recipe(epochs=int(epochs), batch=ctx.recipe.batch, lr=float(lr), momentum=0.9, wd=5e-4,
                  schedule="constant", augment=ctx.recipe.augment)


def unlearn_gen(ctx, *key: Any) -> "torch.Generator":
    """A CPU generator of the trial's ``unlearn`` stream (PROTOCOL §7.4 "Randomness"), keyed by the
    method's name and ``key``: random subsets and fresh initialisations of the §7.4 methods. Their
    data order is the same stream unkeyed (``ctx.train(..., stream="unlearn")``). This is run r = 0,
    the trial's own run, so no run index enters the key [OURS]; an ensemble run r ≠ 0 (PROTOCOL §8.7.0)
    gets its own, through ``ctx.stream``."""
    return ctx.stream("unlearn", ctx.method.name, *key)


def table_batch(ctx, batch: int) -> int:
    """§7.4's batch: the table's ``batch`` on the GPU scenarios, the scenario's own on the CPU
    scenarios (PROTOCOL §7.4 "CPU scenarios", §7.3), which are those that search by default."""
    return int(ctx.recipe.batch) if ctx.search_by_default else int(batch)


def method_recipe(ctx, lr: float, epochs: int, batch: int, augment: bool, **kw):
    """§7's common recipe with this method's batch and optimiser settings; ``augment=false``
    trains on the eval transform, as [SCRUB] and [DU] do (§7.4 common settings)."""
    return recipe(ctx, lr, epochs).with_(batch=batch, augment=ctx.recipe.augment if augment else "none", **kw)


def state_of(model) -> dict[str, "torch.Tensor"]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def random_labels(y: "torch.Tensor", num_classes: int, gen: "torch.Generator", mode: str) -> "torch.Tensor":
    """y' uniform over the classes other than y (``not_true``, the paper's equation) or over all
    classes (``uniform_all``, the [SAL] code, where y' may equal y). PROTOCOL §7 RL notes."""
    import torch

    if mode == "uniform_all":
        return torch.randint(0, num_classes, y.shape, generator=gen)
    return (y + torch.randint(1, num_classes, y.shape, generator=gen)) % num_classes


def last_linear(model) -> tuple[str, Any]:
    """(name, module) of the last ``nn.Linear`` in ``model.modules()`` order: the classifier head."""
    from torch import nn

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError("the model has no nn.Linear layer")
    return found[-1]


class Baseline(Method):
    """A §7 baseline: ``build(ctx, prep, **hp)`` returns the unlearned state for one setting of
    its step size (an iterative method: the list of its states after each epoch, under the v2
    search); ``unlearn`` uses the configured value or runs the §7.3 search.

    ``selects`` is True: the step size can be chosen by the run's rule (§7.3), which reads
    the rule's splits; the runner's Used-splits column reads this class attribute."""

    selects = True
    claim_role = "trained"  # the paper's training-based comparisons [P T2] (report/claims.py)
    variant_keys: tuple[str, ...] = ()  # the options that name the variant (recorded in run.json)
    step_key = "lr"  # the hyperparameter the search scales
    alternatives: tuple[float, ...] = ()  # values §7 names besides b, added to the v2 grid (§7.3 step 1)
    positive: tuple[str, ...] = ()  # options, besides the step size, that must be > 0
    fractions: tuple[str, ...] = ()  # options that must be in (0, 1]

    def check_config(self, cfg) -> None:
        for k in (self.step_key, *self.positive):
            if not self.setting(cfg, k) > 0:
                raise ConfigError(f"method.{k} of {self.name!r} must be > 0, not {cfg[k]}")
        for k in self.fractions:
            if not 0 < cfg[k] <= 1:
                raise ConfigError(f"method.{k} must be in (0, 1], not {cfg[k]}")

    def setting(self, cfg, key: str) -> Any:
        """The value option ``key`` stands for: the option itself, unless a method's ``variant``
        supplies it (Bad Teacher's 0 = the variant's value, PROTOCOL §7.4.3)."""
        return cfg[key]

    def variant(self, cfg) -> str:
        return ", ".join(f"{k}={cfg[k]}" for k in self.variant_keys) or "default"

    def prepare(self, ctx) -> Any:
        """Work done once, whatever the step size (a saliency mask, IU's vectors)."""
        return None

    def step_grid(self, ctx) -> list[float]:
        """The searched values of ``step_key``: §7.3's v2 grid, or v1's five points."""
        base = float(self.setting(ctx.cfg, self.step_key))
        return half_decade_grid(base, self.alternatives) if search_v2(ctx) else scaled_grid(base)

    def candidates(self, ctx) -> list[dict]:
        return [{self.step_key: v} for v in self.step_grid(ctx)]

    def build(self, ctx, prep: Any, **hp: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def record_recipe(self, ctx, chosen: dict) -> None:
        """Record the recipe of the chosen setting in ``info.recipe`` (IU, a one-shot edit, has none)."""

    def unlearn(self, ctx) -> Result:
        ctx.info["variant"] = self.variant(ctx.cfg)
        prep = self.prepare(ctx)
        if not search_active(ctx):
            hp = {self.step_key: float(self.setting(ctx.cfg, self.step_key))}
            ctx.info.update(hp)
            self.record_recipe(ctx, hp)
            return Result(self.build(ctx, prep, **hp))
        if search_v2(ctx):  # §7.3 steps 3-4: θ_0 as the null point, the grid extended at a chosen end
            state, sel = ctx.search(self.candidates(ctx), lambda c: self.build(ctx, prep, **c),
                                    null={self.step_key: 0.0}, extend=self.step_key)
        else:
            state, sel = ctx.search(self.candidates(ctx), lambda c: self.build(ctx, prep, **c))
        chosen = sel.params["chosen"]
        ctx.info.update(chosen)
        if sel.params.get("search") == "v2":
            ctx.info["none_feasible"] = sel.params["none_feasible"]  # θ_0 returned (§7.3 step 3)
            ctx.info["grid_extended"] = sel.params["grid_extended"]
        self.record_recipe(ctx, chosen)  # the chosen one (v1 recorded the last candidate's: §11)
        return Result(state, selection=sel)


class Trained(Baseline):
    """A baseline that trains from θ_0 with the shared loop (everything but IU)."""

    positive = ("epochs",)

    def recipe_for(self, ctx, lr: float, epochs: int) -> Recipe:
        """The recipe this method trains with: §7's common settings; a §7.4 method with its own
        optimiser settings or schedule (NG+'s wd 0, SCRUB's decay points) says so here."""
        return recipe(ctx, lr, epochs)

    def record_recipe(self, ctx, chosen: dict) -> None:
        """The chosen lr and epoch count (None: θ_0, no training); outside the v2 search, §7's epochs."""
        epoch = chosen.get("epoch")
        ctx.info["recipe"] = None if epoch == 0 else self.recipe_for(ctx, chosen["lr"], epoch or self.setting(
            ctx.cfg, "epochs")).spec()

    def train(self, ctx, model, x, y, lr: float, *, on_epoch: Callable[[int], None] | None = None, **kw: Any):
        """Train ``model`` from θ_0 with the §7 recipe at ``lr``: the final state, or under the v2
        search the states after epochs 1…T (§7.3 step 2: the rule measures each in the driver; a
        build may run in a worker without the rule's splits). A schedule over T, l1-sparse's α_t,
        runs in full, so epoch t is the iterate the full schedule passes through."""
        rec = self.recipe_for(ctx, lr, self.setting(ctx.cfg, "epochs"))
        if not search_v2(ctx):
            ctx.train(model, x, y, rec, on_epoch=on_epoch, **kw)
            return state_of(model)
        states: list[dict] = []

        def each_epoch(t: int) -> None:
            if t:  # before epoch t: the weights after epoch t − 1
                states.append(state_of(model))
            if on_epoch is not None:
                on_epoch(t)

        ctx.train(model, x, y, rec, on_epoch=each_epoch, **kw)
        states.append(state_of(model))
        return states
