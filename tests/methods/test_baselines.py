"""The training-based baselines of PROTOCOL §7: each runs end to end on digits, and each has
a test of what makes it that method (§7.1 mask, §7.2 recursion, BS/BE notes, RL notes)."""
from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from unlearnbench import ConfigError
from unlearnbench.config import resolve
from unlearnbench.runner import run_trial

MODULES = ("finetune", "relabel", "gradient_ascent", "influence", "boundary", "neggrad_plus", "scrub")
OFF = "method.lr_search=off"


@pytest.fixture(scope="module")
def bhost():
    """The installed plugins, the baseline modules among them (one module-wide host: the tests
    here only read it)."""

    from unlearnbench.plugins import PluginHost

    h = PluginHost()
    h.load_entry_points()
    for name in MODULES:  # registered through pyproject's entry points, like a third party
        assert f"unlearnbench.methods.{name}" in {i.module for i in h.infos.values()}, name
    return h


def run(host, store, tmp_path, method, scenario="digits-10pct", over=()):
    res = resolve(host, method=method, scenario=scenario, overrides=list(over))
    return run_trial(res, 0, store=store, runs_dir=tmp_path / "runs", data_root=None)


def make_ctx(host, store, method, over=(), scenario="digits-10pct"):
    from unlearnbench.context import Ctx
    from unlearnbench.stages import Stages

    res = resolve(host, method=method, scenario=scenario, overrides=[OFF, *over])
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    return Ctx(Stages(task, store), res.method, res.cfg.method, res.rule, res.cfg.selection, res.cfg.pool)


def flat(state, keys):
    import torch

    return torch.cat([state[k].flatten().float() for k in keys])


# -- every baseline, end to end on the class-wise scenario -----------------------------------------
# tests/methods/test_conformance.py runs every registered method on digits-10pct; here the
# methods with the §7.3 step-size search (the baselines, by what they declare) run once on
# digits-class, with what only a baseline's record holds.

def _options(method) -> set:
    return {f.name for f in dataclasses.fields(method.Config)} if method.Config is not None else set()


def _registered_baselines() -> list[str]:
    from unlearnbench.plugins import PluginHost

    h = PluginHost()
    h.load_entry_points()
    return sorted(n for n in h.methods.names() if "lr_search" in _options(h.methods.get(n)))


@pytest.mark.parametrize("method", _registered_baselines())
def test_runs_class_wise(bhost, session_store, tmp_path, method):
    m = bhost.methods.get(method)
    rec = run(bhost, session_store, tmp_path, method, "digits-class",
              [OFF, "threads=1", *(["method.epochs=2"] if "epochs" in _options(m) else [])])
    for k in ("acc_retain", "acc_forget", "acc_test", "acc_val", "acc_test_forget_class", "mia"):
        assert 0.0 <= rec["metrics"][k] <= 100.0
    assert rec["info"]["variant"] and rec["selection"] is None
    assert rec["config"]["method"]["lr_search"] == "off"  # the YAML boolean is recorded as the word
    assert set(m.uses) <= set(rec["used_splits"].split("+"))
    if rec["config"]["method"].get("label_sampling") == "not_true":
        assert rec["info"]["labels_equal_true"] == 0  # y' != y under the default not_true


def test_lr_search_on_cpu_scenarios(bhost, session_store, tmp_path):
    """PROTOCOL §7.3: auto on digits selects (lr, epoch) by rule (c) over the v2 grid, θ_0 first;
    `method.search_grid=v1` is the protocol-1 search, {b/10, b/3, b, 3b, 10b} at the last epoch."""
    rec = run(bhost, session_store, tmp_path, "gradient-ascent")
    sel = rec["selection"]
    grid = [1e-6, 3.16228e-6, 1e-5, 3.16228e-5, 1e-4, 3.16228e-4, 5e-4, 1e-3]  # + GA's named 5e-4 and 1e-3
    assert sel["rule"] == "val_matched" and not sel["oracle"] and sel["params"]["search"] == "v2"
    assert [c["lr"] for c in sel["params"]["grid"]] == grid
    # on digits-10pct no lr of the grid moves GA off θ_0 (~0 loss on D_f): the flat curve extends upward
    ext = [c["lr"] for c in sel["params"]["extended"]]
    assert ext == [3.16228e-3, 1e-2][:len(ext)] and ext and sel["params"]["extensions"]["above"] == len(ext)
    assert [(c["lr"], c["epoch"]) for c in sel["curve"]] == [(0.0, 0)] + [(v, t) for v in grid + ext
                                                                       for t in range(1, 6)]
    # the curve also holds the ORACLE rules' metrics (selection.also); val_matched saw only its own (test_also)
    assert sel["evals"] == 1 + 5 * len(grid + ext) and set(rec["by_rule"]) == {"oracle_avg_gap", "oracle_split_test"}
    assert rec["info"]["lr"] == sel["params"]["chosen"]["lr"] and rec["used_splits"] == "forget+val"
    assert {"none_feasible", "grid_extended"} <= set(rec["info"])
    rec = run(bhost, session_store, tmp_path / "v1", "gradient-ascent", over=["method.search_grid=v1"])
    sel = rec["selection"]
    assert sel["evals"] == 5 and "search" not in sel["params"]
    assert [c["lr"] for c in sel["params"]["grid"]] == [1e-5, 3.33333e-5, 1e-4, 3e-4, 1e-3]
    assert [c["lr"] for c in sel["curve"]] == [c["lr"] for c in sel["params"]["grid"]]
    assert rec["info"]["lr"] == sel["params"]["chosen"]["lr"] == rec["info"]["recipe"]["lr"]
    assert rec["info"]["recipe"]["epochs"] == 5


def test_config_options_are_checked(bhost):
    with pytest.raises(ConfigError, match="label_sampling"):
        resolve(bhost, method="random-label", overrides=["method.label_sampling=uniform"])
    with pytest.raises(ConfigError, match="lr_search"):
        resolve(bhost, method="finetune", overrides=["method.lr_search=maybe"])
    with pytest.raises(ConfigError, match="mask_mode"):
        resolve(bhost, method="salun", overrides=["method.mask_mode=soft"])
    assert resolve(bhost, method="salun").cfg.method.lr == 0.013


def test_modules_do_not_import_torch():
    code = ("import sys\nfor m in " + repr(MODULES) + ": __import__('unlearnbench.methods.' + m)\n"
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


# -- SalUn (§7.1) ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["hard", "leaky"])
def test_salun_mask(bhost, session_store, mode):
    import torch

    from unlearnbench.methods.relabel import saliency_mask

    ctx = make_ctx(bhost, session_store, "salun", [f"method.mask_mode={mode}"])
    theta0 = ctx.original()
    out = ctx.method.unlearn(ctx).state
    model = ctx.new_model(theta0)
    mask = saliency_mask(model, *ctx.data("forget"), 0.5)
    names = [n for n, _ in model.named_parameters()]
    d = sum(mask[n].numel() for n in names)
    m = torch.cat([mask[n].flatten() for n in names])
    assert int(m.sum()) == math.floor(0.5 * d) == ctx.info["mask"]["kept"]
    moved = flat(out, names) != flat(theta0, names)
    if mode == "hard":
        assert not moved[~m].any()  # masked weights stay exactly θ_0 (wd and momentum included)
    else:
        assert moved[~m].float().mean() > 0.5  # leaky: weight decay and momentum move them
    assert moved[m].float().mean() > 0.5
    # buffers are not masked, and the keys are θ_0's
    assert set(out) == set(theta0)


def test_salun_mask_ties_go_to_the_lower_index():
    import torch
    from torch import nn

    from unlearnbench.methods.relabel import saliency_mask

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.zero_()  # dead first layer: many |g| = 0 ties
        model[0].bias.zero_()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    mask = saliency_mask(model, x, y, 0.5)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    g = torch.cat([p.grad.abs().flatten() for p in model.parameters()])
    m = torch.cat([mask[n].flatten() for n, _ in model.named_parameters()])
    k = len(g) // 2
    tau = g.sort(descending=True).values[k - 1]
    assert m.sum() == k and m[g > tau].all() and not m[g < tau].any()
    tied = (g == tau).nonzero().flatten()
    kept = m[tied]
    assert kept.sum() >= 1 and not (kept[1:].int() > kept[:-1].int()).any()  # kept ties form a prefix


# -- Random labels -----------------------------------------------------------------------------

def test_random_labels():
    import torch

    from unlearnbench.methods._common import random_labels

    y = torch.arange(10).repeat(2000)
    g = torch.Generator().manual_seed(0)
    yn = random_labels(y, 10, g, "not_true")
    assert not (yn == y).any() and set(yn[y == 3].tolist()) == set(range(10)) - {3}
    assert (random_labels(y, 10, g, "uniform_all") == y).float().mean() == pytest.approx(0.1, abs=0.02)


def test_rl_variants(bhost, session_store):
    ctx = make_ctx(bhost, session_store, "random-label",
                   ["method.label_sampling=uniform_all", "method.schedule=sequential", "method.epochs=2"])
    out = ctx.method.unlearn(ctx).state
    assert ctx.info["variant"] == "label_sampling=uniform_all, schedule=sequential"
    assert ctx.info["labels_equal_true"] > 0  # the code's rule may draw the true label
    assert set(out) == set(ctx.original())


def test_sequential_schedule_order():
    """HEAD's order: every epoch all forget batches, then all retain batches, each shuffled."""
    import torch

    from unlearnbench.methods.relabel import sequential_batches

    nf, nr = 5, 7
    epochs = sequential_batches([nf, nr], 2, 2, torch.Generator().manual_seed(0))
    assert len(epochs) == 2 and all(len(e) == 3 + 4 for e in epochs)
    for e in epochs:
        assert all((b < nf).all() for b in e[:3]) and all((b >= nf).all() for b in e[3:])
        assert sorted(torch.cat(e).tolist()) == list(range(nf + nr))  # each row once per epoch
    assert not all(torch.equal(a, b) for a, b in zip(*epochs))  # reshuffled every epoch


def test_the_loop_follows_the_given_batches():
    """``train(batches=...)`` steps through exactly the given rows, in order, epoch by epoch."""
    import torch
    from torch import nn

    from unlearnbench import Recipe
    from unlearnbench.training import train

    x, y = torch.arange(6).float()[:, None], torch.zeros(6, dtype=torch.long)
    order = [[torch.tensor([4, 5]), torch.tensor([0])], [torch.tensor([1, 2, 3]), torch.tensor([5])]]
    seen = []

    def loss_fn(m, xb, yb):
        seen.append(xb.flatten().long().tolist())
        return nn.functional.cross_entropy(m(xb), yb)

    rec = Recipe(epochs=2, batch=2, lr=0.1, schedule="constant")
    train(nn.Linear(1, 2), x, y, rec, torch.Generator().manual_seed(0), loss_fn=loss_fn, batches=order,
          show_progress=False)
    assert seen == [[4, 5], [0], [1, 2, 3], [5]]
    with pytest.raises(ValueError, match="same number"):
        train(nn.Linear(1, 2), x, y, rec, torch.Generator(), batches=[order[0], order[1][:1]])


def test_sequential_schedule_keeps_its_augmentations():
    """RL's sequential schedule once fed the loop through stand-in tensors of steps·batch rows (the
    loop drew its own permutation, unused, before each epoch's augmentations); with ``batches=`` an
    augmented recipe (CIFAR-10's crop_flip) must still train bit for bit the same weights."""
    import torch
    from torch import nn

    from unlearnbench import Recipe
    from unlearnbench.methods.relabel import sequential_batches
    from unlearnbench.training import train

    class Feed:  # the stand-in, as it was: x[idx] and y[idx] hand out the next batch of the epoch
        def __init__(self, batches, data, which):
            self.batches, self.data, self.which, self.epoch, self.pos = batches, data, which, -1, 0

        def __len__(self):
            return len(self.batches[0]) * rec.batch

        def __getitem__(self, _):
            if self.pos == 0:
                self.epoch += 1
            idx = self.batches[self.epoch][self.pos]
            self.pos = (self.pos + 1) % len(self.batches[0])
            return self.data[self.which][idx]

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(37 + 70, 3, 32, 32, generator=g), torch.randint(0, 10, (37 + 70,), generator=g)
    rec = Recipe(epochs=3, batch=16, lr=0.05, schedule="constant", augment="crop_flip")
    batches = sequential_batches([37, 70], rec.batch, rec.epochs, torch.Generator().manual_seed(7))
    states = []
    for feed in (True, False):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(3600, 10))
        args = (Feed(batches, (x, y), 0), Feed(batches, (x, y), 1)) if feed else (x, y)
        train(model, *args, rec, torch.Generator().manual_seed(3), batches=None if feed else batches,
              show_progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


# -- Gradient Ascent, l1-sparse ------------------------------------------------------------------

def forget_loss(model, x, y):
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        return float(F.cross_entropy(model.eval()(x), y))


def test_gradient_ascent_raises_the_forget_loss(bhost, session_store):
    ctx = make_ctx(bhost, session_store, "gradient-ascent")
    x, y = ctx.data("forget")
    before = forget_loss(ctx.new_model(ctx.original()), x, y)
    after = forget_loss(ctx.new_model(ctx.method.unlearn(ctx).state), x, y)
    assert after > before


def test_l1_sparse_schedule_and_penalty(bhost, session_store):
    from unlearnbench.methods.finetune import l1_alpha

    over = ["method.epochs=2", "method.lr=0.01"]
    ctx = make_ctx(bhost, session_store, "l1-sparse", [*over, "method.alpha=0.01"])
    l1_state = ctx.method.unlearn(ctx).state
    assert ctx.info["alpha_schedule"] == [0.01, 0.005]  # α(1 − t/T), t = 0, 1: ends at α/T, never 0
    assert [l1_alpha(1e-4, t, 10) for t in (0, 9)] == [1e-4, pytest.approx(1e-5)]
    ft = make_ctx(bhost, session_store, "finetune", over)
    ft_state = ft.method.unlearn(ft).state
    keys = ctx.param_keys()
    assert flat(l1_state, keys).abs().sum() < 0.9 * flat(ft_state, keys).abs().sum()


# -- Influence (§7.2) ----------------------------------------------------------------------------

def test_influence_faithful_is_v_minus_c_g0(bhost, session_store):
    import torch

    from unlearnbench.methods.influence import _grad, faithful_k, influence_v

    ctx = make_ctx(bhost, session_store, "influence")
    theta0 = ctx.original()
    out = ctx.method.unlearn(ctx).state
    model = ctx.new_model(theta0).eval()
    names = [n for n, _ in model.named_parameters()]
    (xf, yf), (xr, yr) = ctx.data("forget"), ctx.data("retain")
    k = faithful_k(model, xr, yr, influence_v(model, xf, yf, xr, yr))
    assert torch.allclose(flat(out, names), flat(theta0, names) + 0.2 * k, rtol=0, atol=1e-6)  # θ_0 + α·k
    assert all(torch.equal(out[b], theta0[b]) for b in set(theta0) - set(names))  # buffers untouched
    # the documented degeneracy, in float64 so that c·g_0 stands out of rounding: k − v ∥ g_0
    model = model.double()
    xf, xr = xf.double(), xr.double()
    v = influence_v(model, xf, yf, xr, yr)
    r = faithful_k(model, xr, yr, v) - v
    g0 = _grad(model, xr[:1], yr[:1])
    cos = float(r @ g0 / (r.norm() * g0.norm()))  # by hand: F.cosine_similarity clamps norms below 1e-8
    assert r.norm() > 1e-7 * v.norm() and abs(cos) > 1 - 1e-9


def test_influence_fisher_extension(bhost, session_store):
    ctx = make_ctx(bhost, session_store, "influence", ["method.variant=iu_fisher"])
    out = ctx.method.unlearn(ctx).state
    assert ctx.info["variant"].startswith("iu_fisher") and set(out) == set(ctx.original())
    assert ctx.info["cg"]["0.1"]["residual"] <= 1e-5


# -- Boundary Shrink and Expanding ------------------------------------------------------------------

def test_boundary_shrink_neighbour_labels(bhost, session_store):
    import torch

    from unlearnbench.methods.boundary import fgsm, frozen_copy, neighbour_labels

    ctx = make_ctx(bhost, session_store, "boundary-shrink", ["method.eps=0.25"])
    frozen = frozen_copy(ctx)
    x, y = ctx.data("forget")
    x_adv = fgsm(frozen, x, y, 0.25)
    assert torch.equal(x_adv * 255, (x_adv * 255).round()) and 0 <= x_adv.min() and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= 0.25 + 1 / 510 + 1e-6  # ε, then rounding to 1/255
    y_nb = neighbour_labels(frozen, x, y, 0.25)
    success = frozen(x_adv).argmax(1) != y
    assert success.any() and torch.equal(y_nb != y, success)  # y_nb = y exactly where the attack fails
    out = ctx.method.unlearn(ctx).state
    assert ctx.info["attack_success"] == pytest.approx(float(success.float().mean()))
    assert set(out) == set(ctx.original())


@pytest.mark.parametrize("variant", ["pruned", "salun_port"])
def test_boundary_expanding_returns_a_c_way_model(bhost, session_store, variant):
    import torch

    from unlearnbench.methods._common import last_linear
    from unlearnbench.methods.boundary import widen

    ctx = make_ctx(bhost, session_store, "boundary-expanding", [f"method.variant={variant}", "method.lr=0.01"])
    theta0 = ctx.original()
    out = ctx.method.unlearn(ctx).state
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in theta0.items()}
    head, lin = last_linear(ctx.new_model(out))
    assert lin.out_features == ctx.num_classes == 10
    assert not torch.equal(out[f"{head}.weight"], theta0[f"{head}.weight"])  # it trained
    wide = ctx.new_model(theta0)
    c, name = widen(wide, torch.Generator().manual_seed(0), variant)
    w = last_linear(wide)[1]
    assert (c, name, w.out_features) == (10, head, 11) and torch.equal(w.weight[:c], theta0[f"{head}.weight"])
    assert (float(w.bias[c].detach()) == 0.0) == (variant == "pruned")
    if variant == "salun_port":
        assert "C+1" in ctx.info["evaluated"] and ctx.info["c_plus_1_by_lr"]["0.01"]["shadow_share_forget"] > 50
