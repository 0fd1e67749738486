"""Bad Teacher, MSG and CT (PROTOCOL §7.4.3, §7.4.4) and the loop extensions they use (an Adam
optimiser, a gradient hook before the step, per-epoch schedules). What makes each method itself is
tested on synthetic tensors and a tiny conv model through the method's own code and the shared
loop (a stand-in ctx, so no original trains); then one search run per method on digits-10pct."""
from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from unlearnbench import ConfigError, stream_seed
from unlearnbench.config import resolve
from unlearnbench.recipe import Recipe
from unlearnbench.training import lr_at, train

MODULES = ("bad_teacher", "msg")


@pytest.fixture(scope="module")
def host():
    from unlearnbench.plugins import PluginHost

    h = PluginHost()
    h.load_entry_points()
    for name in MODULES:  # registered through pyproject's entry points, like the other baselines
        assert f"unlearnbench.methods.{name}" in {i.module for i in h.infos.values()}, name
    return h


def tiny():
    """Two 3×3 convs (one with a bias), a 1×1 conv, BN and a linear head, for 1×4×4 inputs."""
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                         nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.Conv2d(3, 2, 1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


class FakeCtx:
    """The part of ``Ctx`` these methods read, over synthetic splits and ``tiny``; the real config
    section (resolved as for digits-10pct) and the real loop, seeded as ``Ctx.train`` seeds it."""

    def __init__(self, host, method, over=(), trial=0, cpu=True, nf=10, nr=30):
        res = resolve(host, method=method, scenario="digits-10pct", overrides=["method.lr_search=off", *over])
        self.method, self.cfg, self.trial, self.info = res.method, res.cfg.method, trial, {}
        self.search_by_default, self.device = cpu, "cpu"
        self.recipe = Recipe(epochs=1, batch=8, lr=0.1)
        g = torch.Generator().manual_seed(7)
        self.splits = {"forget": (torch.randn(nf, 1, 4, 4, generator=g), torch.randint(0, 3, (nf,), generator=g)),
                       "retain": (torch.randn(nr, 1, 4, 4, generator=g), torch.randint(0, 3, (nr,), generator=g))}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(123)
            self.theta0 = {k: v.clone() for k, v in tiny().state_dict().items()}
        self.trained: list[dict] = []

    def data(self, split):
        assert split in self.method.uses, split
        return self.splits[split]

    def stream(self, name, *key):  # Ctx.stream in the trial's own run (r = 0)
        from unlearnbench.seeding import torch_gen

        return torch_gen(self.trial, name, *key)

    def original(self):
        return {k: v.clone() for k, v in self.theta0.items()}

    def new_model(self, state=None):
        m = tiny()
        if state is not None:
            m.load_state_dict(state)
        return m

    def train(self, model, x, y, recipe, stream="order", **kw):
        from unlearnbench.seeding import torch_gen

        self.trained.append(dict(model=model, x=x, y=y, recipe=recipe, stream=stream, **kw))
        return train(model, x, y, recipe, torch_gen(self.trial, stream, self.method.name), show_progress=False, **kw)


def unlearn_seed(trial, method, key):
    return torch.Generator().manual_seed(stream_seed(trial, "unlearn", method, key))


# -- the loop: Adam, the gradient hook, per-epoch schedules ---------------------------------------

def test_per_epoch_schedules():
    tri = Recipe(epochs=5, batch=1, lr=0.3, schedule="triangular")  # §7.4.4: η × (1/3, 2/3, 1, 2/3, 1/3)
    assert [lr_at(tri, s, 50, 10) for s in (0, 9, 10, 20, 30, 40, 49)] == pytest.approx(
        [0.1, 0.1, 0.2, 0.3, 0.2, 0.1, 0.1])
    four = Recipe(epochs=4, batch=1, lr=1.0, schedule="triangular")  # A = ⌊5/2⌋ = 2: 1/2, 1, 2/3, 1/3
    assert [lr_at(four, e, 4, 1) for e in range(4)] == pytest.approx([0.5, 1.0, 2 / 3, 1 / 3])
    cos = Recipe(epochs=3, batch=1, lr=1.0, schedule="cosine_epoch")  # CosineAnnealingLR(T_max=3), per epoch
    assert [lr_at(cos, s, 6, 2) for s in range(6)] == pytest.approx([1, 1, 0.75, 0.75, 0.25, 0.25])


def test_adam_is_torch_adam():
    """optimizer=adam is torch.optim.Adam (L2 weight decay, not AdamW's decoupled one)."""
    from unlearnbench.seeding import torch_gen

    x, y = torch.randn(12, 1, 4, 4, generator=torch.Generator().manual_seed(1)), torch.arange(12) % 3
    rec = Recipe(epochs=1, batch=12, lr=0.01, wd=0.1, schedule="constant", optimizer="adam")
    torch.manual_seed(0)
    a, b = tiny(), tiny()
    b.load_state_dict(a.state_dict())
    train(a, x, y, rec, torch_gen(0, "t"), show_progress=False)
    b.train()
    opt = torch.optim.Adam(b.parameters(), lr=0.01, weight_decay=0.1)
    nn.functional.cross_entropy(b(x[torch.randperm(12, generator=torch_gen(0, "t"))]), y[torch.randperm(
        12, generator=torch_gen(0, "t"))]).backward()
    opt.step()
    assert all(torch.allclose(a.state_dict()[k], v, atol=1e-6) for k, v in b.state_dict().items())


def test_before_step_masks_the_loss_gradient_only():
    """The hook runs between backward and step: weight decay (and momentum) act unmasked."""
    from unlearnbench.seeding import torch_gen

    x, y = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(2)), torch.arange(8) % 3
    rec = Recipe(epochs=1, batch=8, lr=0.5, momentum=0.9, wd=0.1, schedule="constant")
    torch.manual_seed(0)
    model = tiny()
    w0 = model[0].weight.detach().clone()
    model.train()
    g = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), model[0].weight)[0]
    train(model, x, y, rec, torch_gen(0, "t"), show_progress=False,
          before_step=lambda: model[0].weight.grad.mul_(0.1))
    # one step from a zero momentum buffer: w − lr·(0.1·g + wd·w); masked decay: w − lr·0.1·(g + wd·w)
    assert torch.allclose(model[0].weight.detach(), w0 - 0.5 * (0.1 * g + 0.1 * w0), atol=1e-6)


# -- Bad Teacher (§7.4.3) --------------------------------------------------------------------------

def test_bad_teacher_targets(host):
    """t is the incompetent teacher's softmax on D_f rows and θ_0's on R rows; T_d is a fresh init of
    the same architecture from the ``unlearn`` stream; the loss is kl_div's 'mean' (KL/C), τ = 1."""
    import torch.nn.functional as F

    ctx = FakeCtx(host, "bad-teacher")
    m = ctx.method
    rows, bad_state = m.prepare(ctx)
    m.build(ctx, (rows, bad_state), lr=1e-4)
    run = ctx.trained[0]
    xf, xr = ctx.splits["forget"][0], ctx.splits["retain"][0]
    assert torch.equal(run["x"], torch.cat([xf, xr[rows]])) and run["y"].tolist() == [1] * 10 + [0] * len(rows)
    assert run["stream"] == "unlearn" and run["recipe"].optimizer == "adam" and run["recipe"].wd == 0
    assert (run["recipe"].lr, run["recipe"].epochs, run["recipe"].batch) == (1e-4, 1, 8)  # CPU: the scenario's batch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(0, "unlearn", "bad-teacher", "incompetent_teacher"))
        fresh = tiny().state_dict()
    assert all(torch.equal(bad_state[k], fresh[k]) for k in fresh)
    bad, good = ctx.new_model(bad_state).eval(), ctx.new_model(ctx.original()).eval()
    student = ctx.new_model(ctx.original()).eval()  # eval: the test's forward and the loss's see the same BN
    xb = torch.cat([xf[:3], xr[rows[:5]]])
    lb = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0])
    with torch.no_grad():
        p_bad, p_good = F.softmax(bad(xb), 1), F.softmax(good(xb), 1)
        assert not torch.allclose(p_bad, p_good, atol=1e-3)  # the two teachers differ, so the test can tell
        log_s = F.log_softmax(student(xb), 1)
        want = torch.cat([p_bad[:3], p_good[3:]])
        swapped = torch.cat([p_good[:3], p_bad[3:]])
        with warnings.catch_warnings():  # kl_div warns that 'mean' divides by |B|·C: that is the definition here
            warnings.simplefilter("ignore")
            ref, other = (F.kl_div(log_s, t, reduction="mean") for t in (want, swapped))
        got = run["loss_fn"](student, xb, lb)
    assert torch.allclose(got, ref, rtol=1e-6) and torch.allclose(ref, F.kl_div(log_s, want, reduction="sum") / 24)
    assert not torch.allclose(got, other)


def test_bad_teacher_subset_comes_from_the_unlearn_stream(host):
    """R = ⌊0.3·|D_r|⌋ rows of D_r from the trial's ``unlearn`` stream: the same trial draws the same
    subset, another trial another; ``variant=du`` takes all of D_r."""
    m = host.methods.get("bad-teacher")
    a, _ = m.prepare(FakeCtx(host, "bad-teacher", trial=0))
    b, _ = m.prepare(FakeCtx(host, "bad-teacher", trial=0))
    c, _ = m.prepare(FakeCtx(host, "bad-teacher", trial=1))
    assert len(a) == math.floor(0.3 * 30) == 9 and torch.equal(a, b) and not torch.equal(a, c)
    drawn = torch.randperm(30, generator=unlearn_seed(0, "bad-teacher", "retain_subset"))[:9]
    assert torch.equal(a, drawn.sort().values)
    du = FakeCtx(host, "bad-teacher", ["method.variant=du"])
    rows, _ = m.prepare(du)
    assert rows.tolist() == list(range(30))
    assert [m.setting(du.cfg, k) for k in ("lr", "epochs")] == [0.01, 10]


# -- MSG (§7.4.4) -----------------------------------------------------------------------------------

def test_msg_selection_counts_and_ties():
    """round(p·n) positions of smallest |g| per layer, ties to the lower flat index."""
    from unlearnbench.methods.msg import smallest

    g = torch.tensor([0.5, -0.1, 0.1, 0.2, 0.1, -0.1, 0.3, 0.9, 0.4, 0.6])  # |g| = 0.1 at 1, 2, 4, 5
    assert smallest(g, 0.3).nonzero().flatten().tolist() == [1, 2, 4]
    assert int(smallest(torch.zeros(12), 0.3).sum()) == 4  # round(3.6): not floor's 3
    assert int(smallest(torch.zeros(8), 0.3).sum()) == 2  # round(2.4): not ceil's 3
    assert smallest(torch.zeros(2, 5), 0.3).flatten().nonzero().flatten().tolist() == [0, 1, 2]  # all tied


def msg_g(ctx, weights):
    """§7.4.4 step 1 as the protocol writes it, from the test's side."""
    import torch.nn.functional as F

    model = ctx.new_model(ctx.original()).eval()
    (xf, yf), (xr, yr) = ctx.splits["forget"], ctx.splits["retain"]
    gen = unlearn_seed(ctx.trial, "msg", "gradient")
    sub = torch.randperm(len(xr), generator=gen)[:len(xf)]
    g = [torch.zeros_like(dict(model.named_parameters())[w]) for w in weights]
    for x, y, sign in ((xr[sub], yr[sub], 1), (xf, yf, -1)):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            b = order[i:i + 64]
            params = dict(model.named_parameters())
            grads = torch.autograd.grad(F.cross_entropy(model(x[b]), y[b]), [params[w] for w in weights])
            for acc, gi in zip(g, grads):
                acc += sign * gi
    return g


@pytest.mark.parametrize("bias", ["keep", "reinit"])
def test_msg_reinitialises_the_smallest_gradients_per_conv_layer(host, bias):
    from unlearnbench.methods.msg import smallest

    ctx = FakeCtx(host, "msg", [f"method.conv_bias={bias}"])
    state, masks = ctx.method.prepare(ctx)
    theta0 = ctx.original()
    convs = ["0.weight", "3.weight", "4.weight"]
    assert list(masks) == convs
    gen = unlearn_seed(0, "msg", "reinit")
    for w, g in zip(convs, msg_g(ctx, convs)):
        want = smallest(g, 0.3)
        assert torch.equal(masks[w], want) and int(want.sum()) == round(0.3 * g.numel())
        fresh = nn.init.kaiming_normal_(torch.empty(g.shape), mode="fan_out", nonlinearity="relu", generator=gen)
        assert torch.equal(state[w][want], fresh[want])  # Kaiming fan_out values at S_ℓ
        assert torch.equal(state[w][~want], theta0[w][~want])  # θ_0 elsewhere
        if bias == "reinit" and w != "3.weight":
            b = w.replace("weight", "bias")
            bound = 1 / math.sqrt(theta0[w][0].numel())
            assert torch.equal(state[b], torch.empty(theta0[b].shape).uniform_(-bound, bound, generator=gen))
    for k in theta0:  # BN, the head and (keep) the conv biases are θ_0's
        if k not in convs and (bias == "keep" or k not in ("0.bias", "4.bias")):
            assert torch.equal(state[k], theta0[k]), k
    assert ctx.info["reinit"] == {"0": [5, 18], "3": [16, 54], "4": [2, 6]}


def test_msg_scales_the_other_conv_gradients(host):
    """×1 at S_ℓ, ×0.1 at the other conv weights; conv bias, BN and linear keep full gradients.
    The fine-tune is CE on D_r, SGD m 0.9 wd 5e-4, triangular per epoch, 5 epochs."""
    ctx = FakeCtx(host, "msg")
    prep = ctx.method.prepare(ctx)
    ctx.method.build(ctx, prep, lr=1e-3)
    run = ctx.trained[0]
    rec = run["recipe"]
    assert (rec.lr, rec.momentum, rec.wd, rec.schedule, rec.epochs, rec.batch) == (1e-3, 0.9, 5e-4, "triangular", 5, 8)
    assert torch.equal(run["x"], ctx.splits["retain"][0]) and run["stream"] == "unlearn"
    model, masks = run["model"], prep[1]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    run["before_step"]()
    for name, p in model.named_parameters():
        if name in masks:
            assert torch.equal(p.grad, torch.where(masks[name], 1.0, 0.1)) and 0 < masks[name].sum() < p.numel()
        else:
            assert torch.equal(p.grad, torch.ones_like(p)), name
    lin = FakeCtx(host, "msg", ["method.layers=conv+linear"])
    assert list(lin.method.prepare(lin)[1]) == ["0.weight", "3.weight", "4.weight", "7.weight"]


# -- CT (§7.4.4) ------------------------------------------------------------------------------------

def test_conv_transpose_transposes_every_kernel(host):
    ctx = FakeCtx(host, "conv-transpose")
    m = ctx.method
    assert m.uses == frozenset({"retain"})
    state, theta0 = m.prepare(ctx), ctx.original()
    for k in theta0:
        if k in ("0.weight", "3.weight", "4.weight"):
            assert torch.equal(state[k], theta0[k].permute(0, 1, 3, 2))  # W[o,i,h,w] -> W[o,i,w,h]
            assert k == "4.weight" or not torch.equal(state[k], theta0[k])  # 1×1 kernels are unchanged
        else:
            assert torch.equal(state[k], theta0[k]), k
    m.build(ctx, state, lr=1e-3)
    rec = ctx.trained[0]["recipe"]
    assert (rec.schedule, rec.epochs, rec.momentum, rec.wd) == ("cosine_epoch", 3, 0.9, 5e-4)
    gpu = FakeCtx(host, "conv-transpose", cpu=False)
    assert m.recipe_for(gpu, 1e-3, 3).batch == 64  # the table's batch on the GPU scenarios
    from unlearnbench.methods.msg import transpose_kernels

    with pytest.raises(ConfigError, match="square"):
        transpose_kernels(nn.Sequential(nn.Conv2d(1, 1, (1, 3))))


# -- options, imports, and one search run each --------------------------------------------------

def test_options_are_checked(host):
    with pytest.raises(ConfigError, match="retain_fraction"):
        resolve(host, method="bad-teacher", overrides=["method.retain_fraction=1.5"])
    with pytest.raises(ConfigError, match="variant"):
        resolve(host, method="bad-teacher", overrides=["method.variant=scrub_port"])
    with pytest.raises(ConfigError, match="layers"):
        resolve(host, method="msg", overrides=["method.layers=linear"])
    with pytest.raises(ConfigError, match="fraction"):
        resolve(host, method="msg", overrides=["method.fraction=0"])
    assert str(resolve(host, method="msg", overrides=["method.layers=conv+linear"]).cfg.method.layers) == "conv+linear"


def test_modules_do_not_import_torch():
    code = ("import sys\nfor m in " + repr(MODULES) + ": __import__('unlearnbench.methods.' + m)\n"
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


@pytest.mark.parametrize("method", ["conv-transpose", "msg", "bad-teacher"])
def test_search_run_on_digits(host, session_store, tmp_path, monkeypatch, method):
    """The §7.3 v2 search over a one-point grid (plus its edge extension) on digits-10pct: (lr, epoch)
    chosen by rule (c) from per-epoch states of the full schedule. About 1.5 s each once the session
    store holds digits-10pct's original and Retrain (tests/methods/ trains them first); alone, the
    first pays their training (~25 s)."""
    from unlearnbench.methods import _common
    from unlearnbench.runner import run_trial

    monkeypatch.setattr(_common, "V2_EXPONENTS", range(0, 1))
    epochs = {"bad-teacher": 1, "msg": 3, "conv-transpose": 3}[method]  # MSG's triangle over 3: ×(1/2, 1, 1/2)
    res = resolve(host, method=method, scenario="digits-10pct", overrides=["threads=1", f"method.epochs={epochs}"])
    rec = run_trial(res, 0, store=session_store, runs_dir=tmp_path / "runs", data_root=None)
    sel = rec["selection"]
    b = {"bad-teacher": 1e-4, "msg": 1e-3, "conv-transpose": 1e-3}[method]
    assert sel["params"]["search"] == "v2" and sel["params"]["grid"] == [{"lr": b}]
    assert [(c["lr"], c["epoch"]) for c in sel["curve"]][:1 + epochs] == [(0.0, 0)] + [(b, t) for t in
                                                                                     range(1, epochs + 1)]
    assert rec["used_splits"] == "forget+retain+val"  # CT's own is retain (above); rule (c) adds forget+val
    assert 0 <= rec["metrics"]["acc_forget"] <= 100
    if sel["params"]["chosen"]["epoch"]:
        assert rec["info"]["recipe"]["epochs"] == (sel["params"]["chosen"]["epoch"] if method == "bad-teacher"
                                                   else epochs)  # a per-epoch schedule is recorded whole
