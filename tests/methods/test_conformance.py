"""unlearnbench.testing: the conformance check third parties run on their methods, its pytest
plugin, and the check over every registered method. Each broken method below must be caught,
with a message that names the problem."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from unlearnbench import Method, Result, hookimpl
from unlearnbench.testing import ConformanceError, check_method as check_method_fn

from helpers import cli_env


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


def test_a_correct_method_conforms(check_method):
    rep = check_method("nudge", host=host_with(Nudge(), OverDeclares()))
    assert rep["used_splits"] == "forget" and not rep["notes"] and 0 <= rep["metrics"]["acc_forget"] <= 100
    rep = check_method("over-declares", host=host_with(Nudge(), OverDeclares()))
    assert "['retain']" in rep["notes"][0]


def test_the_example_third_party_plugin_conforms(check_method, example_plugin_path):
    """Installed as a distribution (entry point), found by the default host."""
    rep = check_method("example-ascent-step")
    assert rep["used_splits"] == "forget"


@pytest.mark.parametrize("method,message", [
    (Unseeded(), "not deterministic"),
    (DropsKey(), "keys that differ"),
    (WrongShape(), "the model's is"),
    (Diverges(), "non-finite"),
    (Peeks(), "does not declare"),
])
def test_broken_methods_are_caught(check_method, method, message):
    with pytest.raises(ConformanceError, match=message):
        check_method(method.name, host=host_with(method))


def test_unregistered_method_says_how_to_register(tmp_path):
    """The plain function, without the plugin's fixture: as the module docstring shows it."""
    with pytest.raises(ConformanceError, match="entry point"):
        check_method_fn("no-such-method", tmp_path, host=host_with())


# -- the pytest plugin ---------------------------------------------------------------------------------

def test_pytest_plugin_gives_the_fixtures_without_importing_torch(tmp_path):
    """A third party's suite: no conftest, the plugin arrives through the pytest11 entry point.
    Loading it must not import torch (pytest loads it in every session of the environment)."""
    (tmp_path / "test_third_party.py").write_text(textwrap.dedent("""
        import sys

        import pytest

        from unlearnbench.testing import ConformanceError


        def test_loaded_lazily(request):
            assert request.config.pluginmanager.has_plugin("unlearnbench")
            assert "torch" not in sys.modules


        def test_fixtures(check_method, unlearnbench_store, unlearnbench_host, tmp_path_factory):
            assert "negmerge" in unlearnbench_host.methods
            assert unlearnbench_store.root.is_relative_to(tmp_path_factory.getbasetemp())
            with pytest.raises(ConformanceError, match="not registered"):
                check_method("no-such-method")
    """))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout + r.stderr


# -- every registered method ---------------------------------------------------------------------------

def _registered() -> dict:
    """The installed methods, read at collection time (timm's test_models): a new built-in or
    plugin gets the check the day it is registered, without anyone adding it to a list."""
    from unlearnbench.plugins import PluginHost

    h = PluginHost()
    h.load_entry_points()
    return {n: h.methods.get(n) for n in h.methods.names()}


REGISTERED = _registered()


def quick(method) -> list[str]:
    """What keeps the check cheap, by what the method declares: a small pool (3 members, draw 0,
    shared with the other digits tests through the session store), no step-size search
    (PROTOCOL §7.3), and 2 epochs (an epoch boundary, at a fifth of the baselines' 10)."""
    over = ["pool.size=3", "threads=1"]
    options = {f.name for f in dataclasses.fields(method.Config)} if method.Config is not None else set()
    if "lr_search" in options:
        over.append("method.lr_search=off")
    if "epochs" in options:
        over.append("method.epochs=2")
    return over


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_every_registered_method_conforms(check_method, name):
    """On the default scenario (digits-class, PROTOCOL §10.2 #47), which has every split a method may
    declare and a Retrain, so every method applies; tests/methods/test_baselines.py has more of it."""
    method = REGISTERED[name]
    over = quick(method)
    rep = check_method(name, overrides=over)
    rec = rep["record"]
    assert rec["method"] == name and set(method.uses) <= set(rec["used_splits"].split("+"))
    search_off = "method.lr_search=off" in over
    assert (rec["selection"] is not None) == (method.selects and not search_off)  # a rule chose, or nothing did
    if search_off:
        assert rec["config"]["method"]["lr_search"] == "off"  # the YAML boolean is recorded as the word
