"""unlearnbench.testing.check_method: the conformance check third parties run on their methods.
Each broken method below must be caught, with a message that names the problem."""
from __future__ import annotations

import pytest

from unlearnbench import Method, Result, hookimpl
from unlearnbench.testing import ConformanceError, check_method


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One store for the module: digits' original and Retrain train once."""
    return tmp_path_factory.mktemp("conformance")


def host_with(*methods):
    from unlearnbench.plugins import PluginHost

    h = PluginHost()
    h.load_entry_points()

    class P:
        @hookimpl
        def register_methods(self, register):
            for m in methods:
                register(m)

    h.register(P(), "under-test")
    return h


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Nudge(Method):
    """A correct method: a fixed, seeded perturbation of θ_0's last layer."""
    name = "nudge"
    description = "test: seeded noise on the head"
    uses = frozenset({"forget"})

    def unlearn(self, ctx):
        import torch

        ctx.data("forget")
        state = ctx.original()
        g = torch.Generator().manual_seed(ctx.trial)
        key = [k for k in state if k.endswith("weight")][-1]
        state[key] = state[key] + 0.01 * torch.randn(state[key].shape, generator=g)
        return Result(state)


class Unseeded(Nudge):
    name = "unseeded"

    def unlearn(self, ctx):
        import torch

        state = ctx.original()
        key = [k for k in state if k.endswith("weight")][-1]
        state[key] = state[key] + 0.01 * torch.randn(state[key].shape)  # the global RNG: differs run to run
        return Result(state)


class DropsKey(Nudge):
    name = "drops-key"

    def unlearn(self, ctx):
        state = ctx.original()
        state.pop(sorted(state)[0])
        return Result(state)


class WrongShape(Nudge):
    name = "wrong-shape"

    def unlearn(self, ctx):
        state = ctx.original()
        key = [k for k in state if k.endswith("bias")][-1]
        state[key] = state[key][:-1]
        return Result(state)


class Diverges(Nudge):
    name = "diverges"

    def unlearn(self, ctx):
        state = ctx.original()
        key = [k for k in state if k.endswith("weight")][-1]
        state[key] = state[key] * float("inf")
        return Result(state)


class Peeks(Nudge):
    name = "peeks"

    def unlearn(self, ctx):
        ctx.data("retain")  # not declared
        return Result(ctx.original())


class OverDeclares(Nudge):
    name = "over-declares"
    uses = frozenset({"forget", "retain"})


def test_a_correct_method_conforms(workdir):
    rep = check_method("nudge", workdir, host=host_with(Nudge(), OverDeclares()))
    assert rep["used_splits"] == "forget" and not rep["notes"] and 0 <= rep["metrics"]["acc_forget"] <= 100
    rep = check_method("over-declares", workdir, host=host_with(Nudge(), OverDeclares()))
    assert "['retain']" in rep["notes"][0]


def test_the_example_third_party_plugin_conforms(workdir, example_plugin_path):
    """Installed as a distribution (entry point), found by the default host."""
    rep = check_method("example-ascent-step", workdir)
    assert rep["used_splits"] == "forget"


@pytest.mark.parametrize("method,message", [
    (Unseeded(), "not deterministic"),
    (DropsKey(), "keys that differ"),
    (WrongShape(), "the model's is"),
    (Diverges(), "non-finite"),
    (Peeks(), "does not declare"),
])
def test_broken_methods_are_caught(workdir, method, message):
    with pytest.raises(ConformanceError, match=message):
        check_method(method.name, workdir, host=host_with(method))


def test_unregistered_method_says_how_to_register(workdir):
    with pytest.raises(ConformanceError, match="entry point"):
        check_method("no-such-method", workdir, host=host_with())
