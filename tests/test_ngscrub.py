"""NegGrad+ (PROTOCOL §7.4.1) and SCRUB / SCRUB+R (§7.4.2): what makes each that method, and the
loop extensions they need (a cycled second loader; passes before the main one; per-epoch decay)."""
from __future__ import annotations

from fractions import Fraction

import pytest
from click.testing import CliRunner

from unlearnbench.config import resolve

OFF = "method.lr_search=off"


def make_ctx(host, store, method, over=(), scenario="digits-10pct"):
    from unlearnbench.context import Ctx
    from unlearnbench.stages import Stages

    res = resolve(host, method=method, scenario=scenario, overrides=["threads=1", *over])
    task = res.scenario.build_task(res.cfg.scenario, 0, None)
    return Ctx(Stages(task, store), res.method, res.cfg.method, res.rule, res.cfg.selection, res.cfg.pool)


def ce(model, x, y):
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        return float(F.cross_entropy(model.eval()(x), y))


def same(a, b):
    import torch

    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


class Ids:
    """A model with one weight whose loss records which rows a batch held (rows carry their ids)."""

    def __init__(self):
        import torch

        self.w = torch.nn.Parameter(torch.zeros(()))
        self.model = torch.nn.Module()
        self.model.register_parameter("w", self.w)


# -- the loop extensions -----------------------------------------------------------------------------

def test_paired_loader_cycles_its_first_pass_and_reshuffles_each_epoch():
    """zip(retain_loader, cycle(forget_loader)): 5 main steps over 3 second batches (2, 2, 1 rows) are
    b0 b1 b2 b0 b1 of that epoch's shuffle; the next epoch reshuffles (§7.4.1)."""
    import torch

    from unlearnbench.recipe import Recipe
    from unlearnbench.training import Paired, train

    ids = Ids()
    seen: list[list[int]] = []

    def loss_fn(m, xb, yb, xf, yf):
        seen.append(xf.tolist())
        return ids.w * 0.0

    x = torch.arange(9.0)
    xf = torch.arange(100.0, 105.0)
    rec = Recipe(epochs=4, batch=2, lr=0.1, schedule="constant")
    train(ids.model, x, x, rec, torch.Generator().manual_seed(0), loss_fn=loss_fn, show_progress=False,
          paired=Paired(xf, xf, 2, torch.Generator().manual_seed(1)))
    assert len(seen) == 4 * 5
    firsts = []
    for e in range(4):
        ep = seen[5 * e:5 * e + 5]
        assert [len(b) for b in ep] == [2, 2, 1, 2, 2] and ep[3:] == ep[:2]  # the first pass, repeated in order
        assert sorted(sum(ep[:3], [])) == xf.tolist()  # one pass covers D_f once
        firsts.append(ep[:3])
    assert len({str(f) for f in firsts}) > 1  # reshuffled at the start of every epoch


def test_phases_run_first_in_their_epochs_with_the_epoch_decay():
    """SCRUB's loop: the max pass precedes the min pass in epochs 1..msteps, one optimiser, and the lr
    is η·ρ^{#{δ: e > δ}} per epoch, although epochs differ in length (§7.4.2). With loss w, SGD
    without momentum or wd moves w by exactly −lr per step."""
    import torch

    from unlearnbench.recipe import Recipe
    from unlearnbench.training import Phase, train

    ids = Ids()
    tags: list[str] = []
    ws: list[float] = [0.0]

    def tagged(tag):
        def loss_fn(m, xb, yb):
            tags.append(tag)
            return ids.w * 1.0
        return loss_fn

    rec = Recipe(epochs=5, batch=1, lr=1.0, momentum=0.0, wd=0.0, schedule="multistep", milestones=(3, 5, 9))
    x2, x3 = torch.zeros(2), torch.zeros(3)
    train(ids.model, x2, x2, rec, torch.Generator().manual_seed(0), loss_fn=tagged("min"), show_progress=False,
          phases=[Phase(x3, x3, 1, tagged("max"), epochs=3)], after_step=lambda: ws.append(float(ids.w.detach())))
    assert tags == (["max"] * 3 + ["min"] * 2) * 3 + ["min"] * 2 * 2
    lrs = [round(a - b, 6) for a, b in zip(ws, ws[1:])]
    assert lrs == [1.0] * 15 + [0.1] * 4  # epochs 1-3 at η, 4-5 at η·0.1 (step // steps-per-epoch would not be)


# -- NG+ -------------------------------------------------------------------------------------------

def test_ngplus_forget_term_raises_the_forget_loss(host, session_store):
    ctx = make_ctx(host, session_store, "neggrad-plus", [OFF, "method.epochs=2"])
    one = make_ctx(host, session_store, "neggrad-plus", [OFF, "method.epochs=2", "method.beta=1"])
    x, y = ctx.data("forget")
    ng = ce(ctx.new_model(ctx.method.build(ctx, None, lr=0.03)), x, y)
    ft = ce(one.new_model(one.method.build(one, None, lr=0.03)), x, y)
    # θ_0 fits D_f at ~0 loss, where CE's gradient is small: 2 epochs raise it by ~25 % over β = 1
    assert ng > 1.1 * ft and ng > ce(ctx.new_model(ctx.original()), x, y)


def test_ngplus_at_beta_1_is_finetuning_on_retain_bit_for_bit(host, session_store):
    """β = 1: the forget term vanishes and NG+ is CE on D_r with NG+'s recipe (wd 0) and stream."""
    ctx = make_ctx(host, session_store, "neggrad-plus", [OFF, "method.epochs=1", "method.beta=1"])
    ng = ctx.method.build(ctx, None, lr=0.01)
    model = ctx.new_model(ctx.original())
    rec = ctx.method.recipe_for(ctx, 0.01, 1)
    ctx.train(model, *ctx.data("retain"), rec, stream="unlearn")
    ft = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    assert same(ng, ft)
    assert (rec.wd, rec.momentum, rec.schedule, rec.batch) == (0.0, 0.9, "constant", 32)  # §7.4.1, CPU batch
    other = make_ctx(host, session_store, "neggrad-plus", [OFF, "method.epochs=1", "method.beta=0.999"])
    assert not same(other.method.build(other, None, lr=0.01), ft)  # the comparison can tell them apart


# -- SCRUB -----------------------------------------------------------------------------------------

def test_distance_is_kl_teacher_to_student_not_the_reverse():
    import torch

    from unlearnbench.methods.scrub import distance, scrub_losses

    g = torch.Generator().manual_seed(0)
    zs, zt, tau = torch.randn(5, 4, generator=g) * 3, torch.randn(5, 4, generator=g) * 3, 4.0
    ps, pt = torch.softmax(zs / tau, 1), torch.softmax(zt / tau, 1)
    forward = (pt * (pt.log() - ps.log())).sum() * tau ** 2 / 5  # KL(teacher ‖ student), summed, ×τ², ÷|B|
    reverse = (ps * (ps.log() - pt.log())).sum() * tau ** 2 / 5
    assert abs(float(reverse - forward)) > 1e-3
    assert torch.allclose(distance(zs, zt, tau), forward) and not torch.allclose(distance(zs, zt, tau), reverse)
    # and the steps hand (student, teacher) to it in that order
    lin_s, lin_t = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    x = torch.randn(5, 3, generator=g)
    max_loss, min_loss = scrub_losses(lin_t, tau, alpha=1.0, gamma=0.0)
    ps, pt = torch.softmax(lin_s(x) / tau, 1), torch.softmax(lin_t(x) / tau, 1)
    kl = (pt * (pt.log() - ps.log())).sum() * tau ** 2 / 5
    assert torch.allclose(max_loss(lin_s, x, None), -kl) and torch.allclose(min_loss(lin_s, x, torch.zeros(5).long()), kl)


def test_scrub_max_steps_raise_kl_on_forget_and_min_steps_lower_it_on_retain(host, session_store):
    """One SCRUB epoch through the loop, with the method's losses and recipe: KL(T ‖ S) on D_f after
    the max pass is above its start (0: S = T), and on D_r the min pass ends below where it began."""
    import torch

    from unlearnbench.methods.scrub import distance, scrub_losses
    from unlearnbench.training import Phase

    ctx = make_ctx(host, session_store, "scrub", [OFF])
    xf, yf = ctx.data("forget")
    xr, yr = ctx.data("retain")
    teacher = ctx.new_model(ctx.original()).eval()
    student = ctx.new_model(ctx.original())
    max_loss, min_loss = scrub_losses(teacher, 4.0, 0.5, 1.0)

    def kl(x):
        student.eval()
        with torch.no_grad():
            d = float(distance(student(x), teacher(x), 4.0))
        student.train()
        return d

    n_max, steps = -(-len(xf) // 16), [0]
    at: list[tuple[float, float]] = [(kl(xf), kl(xr))]

    def after_step():
        steps[0] += 1
        if steps[0] == n_max:  # the max pass is over; the min pass begins
            at.append((kl(xf), kl(xr)))

    ctx.train(student, xr, yr, ctx.method.recipe_for(ctx, 0.05, 1), loss_fn=min_loss, stream="unlearn",
              phases=[Phase(xf, yf, 16, max_loss, epochs=1)], after_step=after_step)
    at.append((kl(xf), kl(xr)))
    assert max(abs(d) for d in at[0]) < 1e-6  # S = T at the start
    assert at[1][0] > at[0][0] + 1e-3  # the max pass moved away from the teacher on D_f
    assert at[2][1] < at[1][1]  # the min pass came back towards it on D_r


def test_rewind_index_closest_and_ties_to_the_smaller_index():
    from unlearnbench.methods.scrub import rewind_index

    F_ = Fraction
    assert rewind_index([F_(0), F_(9, 10), F_(6, 10)], F_(1, 4)) == 0
    assert rewind_index([F_(0), F_(1, 2), F_(3, 10)], F_(2, 5)) == 1  # |0.5−0.4| = |0.3−0.4|: the smaller i
    assert rewind_index([F_(0), F_(1, 10), F_(1, 5)], F_(1, 5)) == 2


def _rewind_with(monkeypatch, host, store, err_forget, err_val):
    """SCRUB+R on digits (E = 2) with Err(·) answered by the given values: the returned state, the
    checkpoints the rewind chose among, the ctx, what Err was asked about, and c_E of the same run
    cut at E = 1 (the same stream and lr schedule: it is c_1 if c_e is taken after epoch e)."""
    from unlearnbench.methods import scrub

    calls, seen = [], []
    answers = iter([*map(Fraction, err_forget), Fraction(err_val)] + [Fraction(0)] * 3)
    real = scrub.Scrub.rewound

    def fake(model, x, y, device, chunk=512):
        calls.append(y.clone())
        return next(answers)

    def spy(self, ctx, lr, checkpoints):
        seen.append(checkpoints)
        return real(self, ctx, lr, checkpoints)

    monkeypatch.setattr(scrub, "errors", fake)
    monkeypatch.setattr(scrub.Scrub, "rewound", spy)
    r = make_ctx(host, store, "scrub-r", [OFF, "method.epochs=2"])
    got = r.method.build(r, None, lr=0.05)
    one = make_ctx(host, store, "scrub-r", [OFF, "method.epochs=1"])
    one.method.build(one, None, lr=0.05)
    return got, seen[0], r, calls[:4], seen[1][-1]


def test_scrub_r_rewinds_to_the_closest_checkpoint(monkeypatch, host, session_store):
    import torch

    got, cs, ctx, calls, c1 = _rewind_with(monkeypatch, host, session_store, ["0", "1/2", "3/10"], "2/5")
    assert len(cs) == 3 and same(cs[0], ctx.original()) and same(cs[1], c1)  # c_0 = θ_0, c_1, c_2 = c_E
    assert not same(cs[1], cs[2]) and not same(cs[0], cs[1])
    assert same(got, cs[1])  # |0.5 − 0.4| = |0.3 − 0.4|: the tie goes to the smaller i
    assert ctx.info["rewind"]["0.05"]["epoch"] == 1
    yf, yv = ctx.data("forget")[1], ctx.data("val")[1]
    assert all(torch.equal(c, yf) for c in calls[:3])  # Err(D_f; c_i) for i = 0, 1, 2
    assert torch.equal(calls[3], yv[torch.isin(yv, torch.unique(yf))])  # then Err(D_val^f; c_E)


def test_scrub_r_rewinds_to_theta0_when_i_star_is_0(monkeypatch, host, session_store):
    got, cs, ctx, _, _ = _rewind_with(monkeypatch, host, session_store, ["0", "9/10", "3/5"], "1/4")
    assert same(got, ctx.original()) and not same(got, cs[-1])  # θ_0, not [DU]'s c_E
    assert ctx.info["rewind"]["0.05"]["epoch"] == 0


def test_scrub_r_with_the_real_errors_on_digits(host, session_store):
    """Unpatched: the recorded errors are those of the checkpoints, and the choice is their argmin."""
    ctx = make_ctx(host, session_store, "scrub-r", [OFF, "method.epochs=2"])
    ctx.method.build(ctx, None, lr=0.05)
    rw = ctx.info["rewind"]["0.05"]
    gaps = [abs(e - rw["err_val_forget_last"]) for e in rw["err_forget"]]
    assert len(gaps) == 3 and rw["epoch"] == gaps.index(min(gaps))


def test_scrub_r_reads_val_and_scrub_does_not(host):
    assert host.methods.get("scrub-r").uses == frozenset({"forget", "retain", "val"})
    assert host.methods.get("scrub").uses == frozenset({"forget", "retain"})
    assert host.methods.get("neggrad-plus").uses == frozenset({"forget", "retain"})


def test_scrub_variants_batches_and_decay(host, session_store):
    ctx = make_ctx(host, session_store, "scrub", [OFF])
    assert ctx.method.batches(ctx) == (32, 16)  # digits: the scenario's batch and half of it (CPU)
    assert ctx.method.recipe_for(ctx, 5e-4, 2).milestones == (3, 5, 9)
    du = make_ctx(host, session_store, "scrub", [OFF, "method.variant=du"])
    assert du.method.batches(du) == (32, 64) and du.method.spec(du).tau == 2.0
    # {⌊0.5E⌋, ⌊0.8E⌋, ⌊0.9E⌋} of the full E = 5, also for an earlier epoch's recorded recipe
    assert du.method.recipe_for(du, 5e-4, 3).milestones == (2, 4, 4)


# -- end to end: `unlearnbench run` under the v2 search, one grid point --------------------------------

@pytest.mark.parametrize("method", ["neggrad-plus", "scrub", "scrub-r"])
def test_run_end_to_end_under_the_v2_search(method, monkeypatch, session_store, tmp_path):
    import json

    from unlearnbench.cli import main
    from unlearnbench.methods import _common

    monkeypatch.setattr(_common, "V2_EXPONENTS", range(0, 1))  # b only (plus θ_0 and any extension)
    r = CliRunner().invoke(main, ["run", "-m", method, "-s", "digits-10pct", "--seeds", "0", "-o", "threads=1",
                                  "-o", "method.epochs=1", "--store", str(session_store.root),
                                  "--runs-dir", str(tmp_path), "-q"])
    assert r.exit_code == 0, r.output
    rec = json.loads(next(tmp_path.rglob("run.json")).read_text())
    sel = rec["selection"]["params"]
    assert sel["search"] == "v2" and rec["info"]["lr"] == sel["chosen"]["lr"]
    per_epoch = method != "scrub-r"  # SCRUB+R's rewind picks its checkpoint; the search picks the lr
    assert {c.get("epoch") for c in rec["selection"]["curve"][1:]} == ({1} if per_epoch else {None})
    assert rec["used_splits"] == "forget+retain+val"  # the rule (c) of digits reads val


@pytest.mark.parametrize("method,option,needle", [
    ("neggrad-plus", "method.beta=1.5", "beta"),
    ("neggrad-plus", "method.prox=-1", "prox"),
    ("neggrad-plus", "method.bn_mode=frozen", "bn_mode"),
    ("scrub", "method.variant=scrubv2", "variant"),
    ("scrub-r", "method.msteps=-1", "msteps"),
])
def test_bad_options_exit_2_with_one_message(method, option, needle, tmp_path):
    from unlearnbench.cli import main

    r = CliRunner().invoke(main, ["run", "-m", method, "-s", "digits-10pct", "--seeds", "0", "-o", option,
                                  "--store", str(tmp_path / "store"), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "runs").exists()
