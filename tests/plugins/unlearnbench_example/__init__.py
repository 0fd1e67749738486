"""An example third-party method plugin: one gradient-ascent step on the forget set.

It is packaged exactly as a third-party distribution would be (see pyproject.toml beside
it): an entry point in the ``unlearnbench`` group, importing only from ``unlearnbench``.
"""
from __future__ import annotations

from dataclasses import dataclass

from unlearnbench import Method, Result, hookimpl, opt


@dataclass
class AscentStepConfig:
    lr: float = opt(0.05, "step size of the single ascent step", "[example]")


class AscentStep(Method):
    name = "example-ascent-step"
    description = "example plugin: one full-batch gradient-ascent step on D_f"
    uses = frozenset({"forget"})
    selects = False
    Config = AscentStepConfig

    def unlearn(self, ctx) -> Result:
        import torch
        import torch.nn.functional as F

        model = ctx.new_model(ctx.original())
        x, y = ctx.data("forget")
        model.eval()
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, [p for p in model.parameters()])
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p.add_(g, alpha=ctx.cfg.lr)  # ascent: raise the forget loss
        return Result({k: v.detach().clone() for k, v in model.state_dict().items()}, info={"loss_before": float(loss.detach())})


@hookimpl
def register_methods(register):
    register(AscentStep())
