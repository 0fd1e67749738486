"""Many small models at once (issue 20, acceptance 7): ``stacked.train_many`` trains each member as
``training.train`` trains it alone, up to float reordering, from exactly the same random numbers; the
``executor.stack`` option trains a trial's pool members so, keyed apart, and the selection on digits
is the one-at-a-time one."""
from __future__ import annotations

import copy

import pytest
import torch

from unlearnbench.recipe import Recipe
from unlearnbench.stacked import train_many
from unlearnbench.training import train

# max |Δθ| / max |θ| between a stacked member and its one-at-a-time twin. A grouped conv and a batched
# matmul sum in another order than the one-model kernels: after a few steps the differences are a few
# float32 ulps (measured 2e-8 to 1.2e-7, digits' cnn-s and fmnist's cnn-bn); 1e-5 leaves room and is far
# below what a real difference (a step more or less, another batch, lr or seed) makes (> 1e-3 here).
# Over a whole pool member they grow as any perturbation of that size grows: a digits member from θ_init,
# 20 epochs, ends 5.0e-4 from its twin, and the one-at-a-time member from θ_0 perturbed by 1e-7 (relative)
# ends 5.0e-4 from it too; from the trained original (the real pool) τ stays within 1e-3 (the digits test).
TOL = 1e-5


def rel_diff(a: dict, b: dict) -> float:
    keys = [k for k in a if a[k].is_floating_point()]
    scale = max(float(a[k].abs().max()) for k in keys)
    return max(float((a[k] - b[k]).abs().max()) for k in keys) / scale


def alone_and_stacked(base, x, y, recipes, seeds, augments=None):
    alone, gens_alone = [], []
    for i, (r, s) in enumerate(zip(recipes, seeds)):
        m, g = copy.deepcopy(base), torch.Generator().manual_seed(s)
        train(m, x, y, r, g, augment=None if augments is None else augments[i], show_progress=False)
        alone.append(m)
        gens_alone.append(g)
    many = [copy.deepcopy(base) for _ in recipes]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    train_many(many, x, y, recipes, gens, augments=augments, show_progress=False)
    for g, h in zip(gens_alone, gens):  # each member drew exactly the random numbers it draws alone
        assert torch.equal(g.get_state(), h.get_state())
    return alone, many


def test_stacked_members_equal_one_at_a_time_up_to_float_reordering():
    """The §6.3 grid's axes per member: epochs (a member that is done leaves the stack), wd, label
    smoothing, lr, momentum and the augmentation (translate1 draws from the member's generator)."""
    from unlearnbench.models import build_model

    torch.manual_seed(0)
    base = build_model("cnn-s", 10)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(70, 1, 8, 8, generator=g), torch.randint(0, 10, (70,), generator=g)  # 3 steps, the last of 6
    common = Recipe(epochs=2, batch=32, lr=0.05, schedule="constant", augment="translate1")
    recipes = [common.with_(epochs=1, wd=1e-4), common.with_(label_smoothing=0.1, wd=1e-5),
               common.with_(lr=0.02, momentum=0.5, augment="none", wd=0.0)]
    alone, many = alone_and_stacked(base, x, y, recipes, [10, 11, 12])
    theta = base.state_dict()
    for a, m in zip(alone, many):
        sa, sm = a.state_dict(), m.state_dict()
        assert rel_diff(sa, sm) < TOL
        assert rel_diff(sa, theta) > 100 * TOL  # it trained: the tolerance is not met by standing still
        assert not m.training
    # a different recipe is far outside the tolerance: the check can tell members apart
    assert rel_diff(alone[1].state_dict(), alone[2].state_dict()) > 100 * TOL


def test_bn_buffers_schedules_and_clipping_in_a_stack():
    """BN statistics update per member; a cosine schedule with warmup and a clipped gradient, per member;
    the suite's channels-last max pool (which vmap cannot run) gives the same values."""
    from torch import nn

    from unlearnbench.models import _maxpool

    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), _maxpool(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 10, (40,), generator=g)
    recipes = [Recipe(epochs=2, batch=16, lr=0.1, schedule="cosine", warmup_steps=2, grad_clip=0.5),
               Recipe(epochs=1, batch=16, lr=0.05, schedule="constant", label_smoothing=0.05)]
    alone, many = alone_and_stacked(base, x, y, recipes, [3, 4])
    for a, m in zip(alone, many):
        sa, sm = a.state_dict(), m.state_dict()
        assert rel_diff(sa, sm) < TOL
        assert torch.equal(sa["1.num_batches_tracked"], sm["1.num_batches_tracked"])
        assert float((sa["1.running_mean"] - sm["1.running_mean"]).abs().max()) < TOL
    assert int(many[0].state_dict()["1.num_batches_tracked"]) == 6  # the stack trained it 2 epochs x 3 steps


def test_what_cannot_share_a_stack_is_refused():
    from torch import nn

    x, y = torch.rand(8, 4), torch.randint(0, 2, (8,))
    gens = [torch.Generator(), torch.Generator()]
    with pytest.raises(ValueError, match="one batch size"):
        train_many([nn.Linear(4, 2), nn.Linear(4, 2)], x, y, [Recipe(1, 4, 0.1), Recipe(1, 8, 0.1)], gens)
    with pytest.raises(ValueError, match="SGD"):
        train_many([nn.Linear(4, 2)] * 2, x, y, [Recipe(1, 4, 0.1, optimizer="adamw")] * 2, gens)


def test_the_option_is_checked_and_stays_out_of_the_hash(host):
    from unlearnbench.config import resolve
    from unlearnbench.errors import ConfigError

    assert resolve(host, overrides=["executor.stack=9"]).hash == resolve(host).hash  # how it runs, not what
    with pytest.raises(ConfigError, match="executor.stack=-2 is negative"):
        resolve(host, overrides=["executor.stack=-2"])


def test_a_stacked_digits_pool_selects_what_one_at_a_time_selects(host, session_store, tmp_path):
    """digits-10pct, NegMerge on a random 3 of the pool (20 to 40 epochs each): the members trained
    as one stack are within the tolerance of the one-at-a-time members, under their own store keys, and
    the run selects the same λ with the same metrics."""
    from unlearnbench.config import resolve
    from unlearnbench.executor import LocalExecutor
    from unlearnbench.runner import build_task, run_trial
    from unlearnbench.stages import Stages

    def run(*over):
        res = resolve(host, scenario="digits-10pct", overrides=["pool.size=3", "selection.also=none", *over])
        return res, run_trial(res, 0, store=session_store, runs_dir=tmp_path / str(len(over)), data_root=None)

    res, one = run()
    _, stacked = run("executor.stack=3")
    assert stacked["provenance"]["executor"] == {"name": "local", "stack": 3}
    assert "stack" not in one["provenance"]["executor"]
    assert stacked["config_hash"] == one["config_hash"]
    assert stacked["lambda"] == one["lambda"]
    assert stacked["selection"]["score"] == pytest.approx(one["selection"]["score"])
    # the whole λ curve the rule chose on: the same accuracies at every λ it visited
    assert [p["lambda"] for p in stacked["selection"]["curve"]] == [p["lambda"] for p in one["selection"]["curve"]]
    for p, q in zip(stacked["selection"]["curve"], one["selection"]["curve"]):
        assert p == pytest.approx(q, abs=1e-9)
    assert stacked["metrics"] == pytest.approx(one["metrics"], abs=1e-9)

    task = build_task(res, 0, None, None)
    a = list(Stages(task, session_store).pool_stream("default", 3, {}))
    timings: dict = {}
    b = list(Stages(task, session_store, executor=LocalExecutor(stack=3)).pool_stream("default", 3, timings))
    assert timings["pool_trained"] == 0  # the run stored them
    for (ma, ta), (mb, tb) in zip(a, b):
        assert ma["index"] == mb["index"] and ma["key"] != mb["key"]
        scale = max(float(v.abs().max()) for v in ta.values())
        # of τ, after 20 to 40 epochs: within what a 1e-7 perturbation of θ_0 gives one at a time (see TOL)
        assert max(float((ta[k] - tb[k]).abs().max()) for k in ta) / scale < 100 * TOL


@pytest.mark.slow
def test_stacks_on_processes_give_the_local_stacked_records_bit_for_bit(tmp_path):
    """A sweep on two worker processes with executor.stack=2: wave 1 trains the pool as stacks (one job
    each), the cell finds them under their stacked keys (its own executor stacks too: nothing retrains),
    and the record is the local stacked run's, weights digests included: the driver forms the stacks, so
    where they run changes nothing."""
    import json
    import shutil

    from click.testing import CliRunner

    from unlearnbench.cli import main

    common = ["digits-10pct", "--seeds", "0", "-o", "threads=1", "-o", "pool.size=4", "-o", "executor.stack=2",
              "--quiet"]

    def cli(cmd, tag, *extra):
        what = ["--method", "negmerge", "--scenario"] if cmd == "run" else ["--methods", "negmerge", "--scenarios"]
        r = CliRunner().invoke(main, [cmd, *what, *common, *extra, "--store", str(tmp_path / f"store-{tag}"),
                                      "--runs-dir", str(tmp_path / f"runs-{tag}")], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        (p,) = (tmp_path / f"runs-{tag}").rglob("run.json")
        return json.loads(p.read_text())

    local = cli("run", "local")
    assert local["timings"]["pool_trained"] == 4 and local["provenance"]["executor"]["stack"] == 2
    for kind in ("init", "original", "retrain", "manifest", "metrics"):  # only the pool is computed again
        shutil.copytree(tmp_path / "store-local" / kind, tmp_path / "store-proc" / kind,
                        ignore=shutil.ignore_patterns("*.lock"))
    proc = cli("sweep", "proc", "-o", "executor=processes", "-o", "executor.workers=2",
               "-o", "executor.threads_per_worker=1")
    assert proc["provenance"]["executor"]["stack"] == 2 and proc["timings"].get("pool_trained", 0) == 0
    assert proc["weights_digest"] == local["weights_digest"] and proc["metrics"] == local["metrics"]
