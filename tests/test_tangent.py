"""Linear Task Arithmetic (PROTOCOL §4.8): the linearised model f_lin(x; θ) = f(x; θ_0) + J·(θ − θ_0),
its pool (its own artifacts, fine-tuned by the suite's loop with BN frozen at θ_0), and the λ sweep on it,
whose logits are affine in λ, so one jvp per split gives every λ."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from unlearnbench.config import config_hash, resolve
from unlearnbench.errors import ConfigError
from unlearnbench.tangent import Linearized, TangentLine
from unlearnbench.taskvec import InPlaceEditor, param_keys


def tiny_bn_net(dtype=torch.float32):
    """Conv, BN (with non-trivial running statistics), pool, linear: every kind of layer the CPU models have."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).to(dtype)
    net[1].running_mean.uniform_(-0.5, 0.5)
    net[1].running_var.uniform_(0.5, 2.0)
    return net


def state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def direction(net, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in net.state_dict().items()
            if k in param_keys(net)}


def test_linearized_equals_the_model_at_theta0_and_keeps_its_state_dict():
    net = tiny_bn_net()
    theta0 = state(net)
    x = torch.randn(5, 1, 8, 8)
    lin = Linearized(net, theta0)
    net.eval()
    with torch.no_grad():
        plain = net(x)
    lin.train()  # f is θ_0's eval-mode function, in training too (tangent module docstring)
    assert not lin.inner.training
    with torch.no_grad():
        assert torch.allclose(lin(x), plain, rtol=0, atol=1e-6)
    assert set(lin.state_dict()) == set(theta0)  # the plain model's keys: store, τ and edits unchanged
    assert sorted(id(p) for p in lin.parameters()) == sorted(id(p) for p in net.parameters())  # θ only


def test_linearized_is_the_first_order_expansion_against_finite_differences():
    net = tiny_bn_net(torch.float64)
    theta0 = state(net)
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    d = direction(net, 1)
    lin = Linearized(net, theta0)

    def f_at(eps):  # the plain model f(x; θ_0 + ε·d), eval mode
        m = tiny_bn_net(torch.float64)
        m.load_state_dict({k: v + eps * d[k] if k in d else v for k, v in theta0.items()})
        return m.eval()(x)

    def lin_at(eps):
        lin.load_state_dict({k: v + eps * d[k] if k in d else v for k, v in theta0.items()})
        return lin(x)

    with torch.no_grad():
        f0 = f_at(0.0)
        h = 1e-5
        fd = (f_at(h) - f_at(-h)) / (2 * h)  # J·d, central differences: error O(h²)
        jd = lin_at(1.0) - f0  # f_lin(θ_0 + d) − f(θ_0) = J·d exactly
        assert torch.allclose(jd, fd, rtol=1e-6, atol=1e-7)
        assert torch.allclose(lin_at(3.0) - f0, 3 * jd, atol=1e-10)  # linear in θ, not only to first order
        assert not torch.allclose(f_at(3.0) - f0, 3 * jd, atol=1e-3)  # ...which f itself is not
        # the jvp of value_and_tangent is the same J·d
        v, t = lin.value_and_tangent(x, d)
        assert torch.allclose(v, f0, atol=1e-12) and torch.allclose(t, jd, atol=1e-10)


def test_fine_tuning_steps_theta_in_the_tangent_space_with_bn_frozen_at_theta0():
    """The suite's one training loop on f_lin: the first step's gradient is f's at θ_0 (the two agree to
    first order there), BN's running statistics never move (eval mode), and θ_0 stays where it was."""
    from unlearnbench.recipe import Recipe
    from unlearnbench.training import train

    net = tiny_bn_net()
    theta0 = state(net)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    recipe = Recipe(epochs=1, batch=16, lr=0.1, schedule="constant", momentum=0.0, wd=0.0)
    lin = Linearized(net, theta0)
    train(lin, x, y, recipe, torch.Generator().manual_seed(0), show_progress=False)
    ref = tiny_bn_net()
    ref.load_state_dict(theta0)
    train(ref.eval(), x, y, recipe, torch.Generator().manual_seed(0), show_progress=False)  # f: BN in train mode
    after = state(net)
    for k in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(after[k], theta0[k]), k  # frozen at θ_0
    assert not torch.equal(state(ref)["1.running_mean"], theta0["1.running_mean"])  # the standard pool's BN moves
    eval_ref = tiny_bn_net()  # one SGD step of f in eval mode: θ_0 − lr·∇f(θ_0), which f_lin's step equals
    eval_ref.load_state_dict(theta0)
    eval_ref.eval()
    loss = nn.functional.cross_entropy(eval_ref(x), y)
    grads = torch.autograd.grad(loss, list(eval_ref.parameters()))
    for (k, p), g in zip(eval_ref.named_parameters(), grads):
        assert torch.allclose(after[k], theta0[k] - 0.1 * g, atol=1e-6), k
    assert torch.equal(lin.base.p0, theta0["0.weight"])  # θ_0 itself untouched


def test_lambda_curve_of_logits_is_affine_and_the_line_gives_every_lambda():
    net = tiny_bn_net()
    theta0 = state(net)
    tau = direction(net, 2, scale=0.3)
    x = torch.randn(7, 1, 8, 8)
    lin = Linearized(net, theta0)
    editor = InPlaceEditor(lin, theta0, tau)  # θ_0 − λτ set in the live parameters, as a plain sweep does
    line = TangentLine(lin, tau)
    lams = [0.0, 0.05, 0.5, 1.0, 1.55, 2.0, 4.0]
    curve = []
    for lam in lams:
        editor.set(lam)
        with torch.no_grad():
            forwarded = lin(x)
        line.set(lam)
        cheap = line.logits("s", x)
        assert torch.allclose(cheap, forwarded, rtol=1e-5, atol=1e-5), lam
        curve.append(forwarded)
    assert line.forwarded == len(x)  # one jvp for the whole curve
    slope = curve[1] - curve[0]
    for lam, c in zip(lams, curve):  # exactly affine: f(θ_0) + λ·(c_1 − c_0)/0.05, to float rounding
        assert torch.allclose(c, curve[0] + slope * (lam / 0.05), rtol=1e-4, atol=1e-4), lam


def test_linearized_forwards_plain_attributes_to_the_model():
    """A multi-head model's ``head`` (CLIP, set by Task.route) reaches the wrapped model."""

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 3)
            self.head = "a"

        def forward(self, x):
            return self.a(x) if self.head == "a" else self.b(x)

    m = TwoHeads()
    lin = Linearized(m, state(m))
    lin.head = "b"
    assert m.head == "b" and lin.head == "b" and lin(torch.randn(4, 2)).shape == (4, 3)


def test_linear_clip_vit_two_heads_frozen_attention():
    """The paper's linear rows are CLIP ViTs [P T1]: attention's fused kernels have no forward-AD rule, so the
    jvp takes the math path; both zero-shot heads route through the wrapper; a fine-tune step moves the
    trainable parameters only (frozen attention stays θ_0's exactly, PROTOCOL §2.2, §3)."""
    pytest.importorskip("open_clip")
    from unlearnbench.recipe import Recipe
    from unlearnbench.scenarios.clip.model import clip_classifier
    from unlearnbench.training import train

    torch.manual_seed(0)
    m = clip_classifier("tiny", 3, 5)
    theta0 = state(m)
    theta0["head_forget"], theta0["head_control"] = torch.randn(3, 32), torch.randn(5, 32)
    m.load_state_dict(theta0)
    x = torch.rand(4, 3, 32, 32)
    lin = Linearized(m, theta0)
    with torch.inference_mode():  # as the evaluator forwards
        for head, n in (("forget", 3), ("control", 5)):
            lin.head = head
            out = lin(x)
            assert out.shape == (4, n) and torch.allclose(out, m.eval()(x), atol=1e-5)
    keys = param_keys(m)
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen and frozen < set(keys)
    recipe = Recipe(epochs=1, batch=4, lr=1e-3, optimizer="adamw", wd=0.1, schedule="constant")
    train(lin, torch.rand(8, 3, 32, 32), torch.randint(0, 3, (8,)), recipe, torch.Generator().manual_seed(0),
          show_progress=False)
    after = state(m)
    assert all(torch.equal(after[k], theta0[k]) for k in frozen)
    assert all(not torch.equal(after[k], theta0[k]) for k in set(keys) - frozen)


# -- the suite: configuration, the linear pool, the λ sweep -----------------------------------------------

def test_pool_linear_is_its_own_configuration_and_old_hashes_stay(host):
    plain = resolve(host, method="negmerge")
    d = plain.to_dict()
    assert d["pool"]["linear"] is False
    assert plain.hash == config_hash({**d, "pool": {k: v for k, v in d["pool"].items() if k != "linear"}})
    on = resolve(host, method="negmerge", overrides=["pool.linear=true"])
    assert on.hash != plain.hash and on.variant == ["pool.linear=True"]
    named = resolve(host, method="linear-negmerge")
    assert named.cfg.pool.linear is True and named.variant == []  # the preset's own default
    assert resolve(host, method="linear-task-arithmetic").cfg.pool.linear is True
    with pytest.raises(ConfigError, match="does not read the pool"):
        resolve(host, method="finetune", overrides=["pool.linear=true"])


def tiny_linear(host):
    """digits-class with a pool of 2 one-epoch members (translated, smoothed labels: members that move, so
    λ* lies inside a 9-point grid and the two members score apart), and its pool section, linear."""
    from omegaconf import OmegaConf

    from unlearnbench.recipe import PoolGrid, Recipe

    res = resolve(host, method="linear-task-arithmetic",
                  overrides=["seeds=[0]", "selection.also=none", "selection.grid=0:2:0.25"])
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    grid = PoolGrid("tiny", Recipe(epochs=1, batch=32, lr=0.05, schedule="constant", augment="translate1",
                                   label_smoothing=0.1), (("epochs", (1,)), ("wd", (1e-4, 1e-5))))
    pool = OmegaConf.create({"name": "tiny", "size": 0, "subset": "0", "augment": "pool", "linear": True})
    return res, dataclasses.replace(task, pools={"tiny": grid}), pool


def test_linear_pool_is_its_own_artifact_with_theta0_buffers(host, session_store):
    from unlearnbench.stages import Stages

    _, task, _ = tiny_linear(host)
    stages = Stages(task, session_store)
    info: dict = {}
    lin = list(stages.pool_stream("tiny", 0, {}, info=info, linear=True))
    std = list(stages.pool_stream("tiny", 0, {}))
    assert info["pool"]["linear"] is True and len(lin) == 2
    for (ml, tl), (ms, ts) in zip(lin, std):
        assert ml["key"] != ms["key"]  # keyed apart from the standard pool
        assert set(tl) == set(ts) and any(not torch.equal(tl[k], ts[k]) for k in tl)  # another fine-tune
    from unlearnbench.seeding import stream_seed

    recipe = stages.pool_members("tiny")[0][1]
    seed = stream_seed(task.trial, "pool", recipe.spec())
    old = stages._spec("pool-member", original=stages.keys["original"], recipe=recipe.spec(), data="forget", seed=seed)
    assert session_store.key(old) == std[0][0]["key"]  # a standard member's key is what it was before §4.8
    held = stages.store.get("pool", lin[0][0]["key"], task.manifest_hash)[0]
    assert set(held) == set(stages.param_keys)


def test_cheap_linear_sweep_equals_the_plain_sweep(host, session_store, monkeypatch):
    """Linear TA single best with the tangent line (one jvp per split and member) chooses the member and λ
    the sweep that forwards f_lin at every λ chooses, on the same curve; and it forwards no image per λ."""
    from unlearnbench.context import Ctx
    from unlearnbench.stages import Stages

    res, task, pool = tiny_linear(host)

    def run(affine):
        stages = Stages(task, session_store)
        ctx = Ctx(stages, res.method, res.cfg.method, res.rule, res.cfg.selection, pool)
        if not affine:
            edit = Ctx._edit
            monkeypatch.setattr(Ctx, "_edit", lambda self, tau, affine=True: edit(self, tau, affine=False))
        stages.original()
        before = stages.evaluator.forwarded
        out = res.method.unlearn(ctx)
        monkeypatch.undo()
        return out, stages.evaluator.forwarded - before, ctx

    cheap, fwd_cheap, ctx = run(True)
    plain, fwd_plain, _ = run(False)
    assert fwd_cheap == 0 < fwd_plain  # the line's jvps replace every per-λ forward
    assert 0 < cheap.lam < 2  # a choice inside the grid, not a degenerate edge
    assert cheap.lam == plain.lam and cheap.info["best_member"]["key"] == plain.info["best_member"]["key"]
    assert [(s["lambda"], s["score"]) for s in cheap.info["member_scores"]] == \
        [(s["lambda"], s["score"]) for s in plain.info["member_scores"]]
    assert len({s["score"] for s in cheap.info["member_scores"]}) == 2  # the members score apart: a real choice
    for a, b in zip(cheap.selection.curve, plain.selection.curve):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-9) for k in a)
    assert ctx.info["pool"]["linear"] is True
    # the logits themselves, at λ*: the line against f_lin forwarded at θ_0 − λ*τ
    x = task.tensors("val")[0]
    model = ctx.new_model(ctx.original())
    line = TangentLine(model, cheap.merged)
    line.set(cheap.lam)
    editor = InPlaceEditor(model, ctx.original(), cheap.merged)
    editor.set(cheap.lam)
    with torch.no_grad():
        assert torch.allclose(line.logits("val", x), model(x), rtol=1e-4, atol=1e-4)
