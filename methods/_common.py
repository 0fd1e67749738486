"""What the training-based baselines of PROTOCOL §7 share: their recipe, the §7.3 search of
their step size, random labels, and state-dict helpers.

Common settings [SAL]: SGD momentum 0.9, wd 5e-4, constant lr, the scenario's batch, BN in
train mode, the last iterate; the loop itself is the core's (``ctx.train``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unlearnbench import Choice, ConfigError, Method, Recipe, Result, opt

if TYPE_CHECKING:
    import torch

LR_FACTORS = (1 / 10, 1 / 3, 1.0, 3.0, 10.0)  # {b/10, b/3, b, 3b, 10b} [OURS] PROTOCOL §7.3, §10.2 #36


class LrSearch(Choice):
    auto = "auto"
    on = "on"  # `-o method.lr_search=on`/`off` arrive as YAML booleans; the config reads them back as words
    off = "off"


def lr_search_opt() -> Any:
    return opt(LrSearch.auto, "select the step size by the run's rule from {b/10, b/3, b, 3b, 10b}: auto = on "
               "the CPU classifier scenarios (digits, fmnist) only, on = always, off = never",
               "[OURS] PROTOCOL §7.3, §10.2 #36")


def search_active(ctx) -> bool:
    mode = LrSearch.of(ctx.cfg.lr_search, "method.lr_search")
    if mode != LrSearch.auto:
        return mode == LrSearch.on
    return ctx.search_by_default  # the scenario says (§7.3)


def scaled_grid(base: float) -> list[float]:
    return [float(f"{base * f:.6g}") for f in LR_FACTORS]


def recipe(ctx, lr: float, epochs: int) -> Recipe:
    """PROTOCOL §7 common settings, with the scenario's batch (§7.3)."""
    return Recipe(epochs=int(epochs), batch=ctx.recipe.batch, lr=float(lr), momentum=0.9, wd=5e-4,
                  schedule="constant", augment=ctx.recipe.augment)


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
    its step size; ``unlearn`` uses the configured value or runs the §7.3 search.

    ``selects`` is True: the step size can be chosen by the run's rule (§7.3), which reads
    the rule's splits; the runner's Used-splits column reads this class attribute."""

    selects = True
    variant_keys: tuple[str, ...] = ()  # the options that name the variant (recorded in run.json)
    step_key = "lr"  # the hyperparameter the search scales
    positive: tuple[str, ...] = ()  # options, besides the step size, that must be > 0
    fractions: tuple[str, ...] = ()  # options that must be in (0, 1]

    def check_config(self, cfg) -> None:
        for k in (self.step_key, *self.positive):
            if not cfg[k] > 0:
                raise ConfigError(f"method.{k} of {self.name!r} must be > 0, not {cfg[k]}")
        for k in self.fractions:
            if not 0 < cfg[k] <= 1:
                raise ConfigError(f"method.{k} must be in (0, 1], not {cfg[k]}")

    def variant(self, cfg) -> str:
        return ", ".join(f"{k}={cfg[k]}" for k in self.variant_keys) or "default"

    def prepare(self, ctx) -> Any:
        """Work done once, whatever the step size (a saliency mask, IU's vectors)."""
        return None

    def candidates(self, ctx) -> list[dict]:
        return [{self.step_key: v} for v in scaled_grid(ctx.cfg[self.step_key])]

    def build(self, ctx, prep: Any, **hp: Any) -> dict[str, "torch.Tensor"]:  # pragma: no cover
        raise NotImplementedError

    def unlearn(self, ctx) -> Result:
        ctx.info["variant"] = self.variant(ctx.cfg)
        prep = self.prepare(ctx)
        if not search_active(ctx):
            hp = {self.step_key: float(ctx.cfg[self.step_key])}
            ctx.info.update(hp)
            return Result(self.build(ctx, prep, **hp))
        state, sel = ctx.search(self.candidates(ctx), lambda c: self.build(ctx, prep, **c))
        ctx.info.update(sel.params["chosen"])
        return Result(state, selection=sel)


class Trained(Baseline):
    """A baseline that trains from θ_0 with the shared loop (everything but IU)."""

    positive = ("epochs",)

    def train(self, ctx, model, x, y, lr: float, **kw: Any):
        rec = recipe(ctx, lr, ctx.cfg.epochs)
        ctx.info["recipe"] = rec.spec()
        return ctx.train(model, x, y, rec, **kw)

