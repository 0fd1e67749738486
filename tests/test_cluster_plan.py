"""benchmarks/cluster_plan.py (issue 15, acceptance 7): the list scheduler and the grid it is fed."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "cluster_plan.py"


@pytest.fixture(scope="module")
def cp():
    spec = importlib.util.spec_from_file_location("cluster_plan", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def toy(cp):
    """a(3) -> {b(2), c(4)} -> d(1); e(5) alone. Critical path a-c-d = 8; total work 15."""
    J = cp.Job
    return [J("a", 3, ()), J("b", 2, ("a",)), J("c", 4, ("a",)), J("d", 1, ("b", "c")), J("e", 5, ())]


def assert_valid(cp, jobs, sched, workers):
    by = {j.name: j for j in jobs}
    assert set(sched.start) == set(by) == set(sched.finish)
    for j in jobs:
        assert sched.finish[j.name] == pytest.approx(sched.start[j.name] + j.seconds)
        for d in j.deps:  # dependencies respected
            assert sched.start[j.name] >= sched.finish[d] - 1e-9
    events = sorted({t for n in by for t in (sched.start[n], sched.finish[n])})
    for t in events:  # never more jobs running than workers
        running = [n for n in by if sched.start[n] <= t < sched.finish[n]]
        assert len(running) <= workers
    assert sched.busy == pytest.approx(sum(j.seconds for j in jobs))


def test_critical_path_of_the_toy_graph(cp):
    length, chain = cp.critical_path(toy(cp))
    assert length == 8 and chain == ["a", "c", "d"]


@pytest.mark.parametrize("priority", ["cp", "lpt"])
def test_enough_workers_give_the_critical_path(cp, priority):
    jobs = toy(cp)
    s = cp.simulate(jobs, 5, priority)
    assert s.wall == 8
    assert_valid(cp, jobs, s, 5)


def test_one_worker_is_the_total_work(cp):
    jobs = toy(cp)
    s = cp.simulate(jobs, 1)
    assert s.wall == 15 and s.utilisation == pytest.approx(1.0)
    assert_valid(cp, jobs, s, 1)


def test_two_workers_on_the_toy_graph(cp):
    # Critical-path first: t=0 a (bottom level 8) and e (5); t=3 c, t=5 b; d at 7 -> 8. Bound max(8, 7.5).
    jobs = toy(cp)
    s = cp.simulate(jobs, 2, "cp")
    assert s.wall == 8 and s.start["c"] == 3 and s.start["d"] == 7
    assert s.utilisation == pytest.approx(15 / 16)
    assert_valid(cp, jobs, s, 2)


def test_perfectly_divisible_work_is_work_over_n(cp):
    jobs = [cp.Job(f"j{i}", 2.0, ()) for i in range(12)]
    for n in (1, 2, 3, 4, 6, 12):
        s = cp.simulate(jobs, n)
        assert s.wall == pytest.approx(24.0 / n) and s.utilisation == pytest.approx(1.0)
        assert_valid(cp, jobs, s, n)


def test_a_fork_join_waits_for_every_branch(cp):
    # root -> 6 branches of 1..6 s -> join: with 2 workers, LPT on the branches gives 11 = ceil(21/2);
    # the join starts only after the last branch.
    J = cp.Job
    jobs = [J("root", 1, ())] + [J(f"b{i}", i, ("root",)) for i in range(1, 7)]
    jobs.append(J("join", 1, tuple(f"b{i}" for i in range(1, 7))))
    s = cp.simulate(jobs, 2)
    assert s.start["join"] == max(s.finish[f"b{i}"] for i in range(1, 7))
    assert s.wall == 1 + 11 + 1
    assert_valid(cp, jobs, s, 2)


def test_bad_graphs_are_refused(cp):
    J = cp.Job
    with pytest.raises(ValueError, match="cycle"):
        cp.simulate([J("a", 1, ("b",)), J("b", 1, ("a",))], 2)
    with pytest.raises(ValueError, match="unknown"):
        cp.simulate([J("a", 1, ("x",))], 2)
    with pytest.raises(ValueError, match="twice"):
        cp.simulate([J("a", 1), J("a", 2)], 2)
    with pytest.raises(ValueError, match="at least 1"):
        cp.simulate([J("a", 1)], 0)


def test_flop_counts(cp):
    # cnn-bn: issue 15 quotes 2.84 MFLOP per image; CIFAR ResNet-18: the well-known 0.56 GMAC.
    assert cp.cnn_bn_flops() == 2 * 1_420_032
    assert cp.resnet18_cifar_flops() == pytest.approx(2 * 0.5556e9, rel=1e-3)


def _record(root, method, seed, timings, grid_n=0):
    d = root / "toy-10pct" / method / f"seed-{seed}"
    d.mkdir(parents=True)
    sel = {"params": {"grid": [{"lr": i} for i in range(grid_n)]}} if grid_n else {}
    d.joinpath("run.json").write_text(json.dumps({
        "method": method, "trial": seed, "timings": timings, "selection": sel,
        "provenance": {"cpu": "toy", "threads": 2, "torch": "x"}}))


def test_the_grid_graph_from_records(cp, tmp_path):
    """One trial of a toy record set: the job counts and the dependencies the plan promises."""
    _record(tmp_path, "retrain", 0, {"original_s": 30.0, "retrain_s": 27.0, "eval_s": 10.0, "total_s": 70.0})
    _record(tmp_path, "negmerge", 0, {"pool_s": 270.0, "pool_trained": 27, "pool_n": 27, "merge_wall_s": 0.1,
                                      "select_s": 41.0, "select_evals": 41, "eval_s": 10.0, "total_s": 330.0})
    _record(tmp_path, "task-arithmetic", 0, {"pool_s": 0.0, "pool_trained": 0, "pool_n": 27, "select_s": 27 * 41.0,
                                             "select_evals": 27 * 41, "eval_s": 10.0, "total_s": 1200.0})
    _record(tmp_path, "finetune", 0, {"search_s": 50.0, "search_evals": 5, "unlearn_s": 50.0, "eval_s": 10.0,
                                      "total_s": 60.0}, grid_n=5)
    stages, plan, notes = cp.cpu_stages(tmp_path, "toy-10pct")
    assert notes == []
    q = cp.ratios()
    assert stages["original"].cifar_cpu_s == pytest.approx(30.0 * q["flop"] * q["original"])
    # 270 s over 9 x (5 + 10 + 15) fmnist D_f epochs = 1 s per epoch; a 60-epoch CIFAR member is 60 x 5/6 of them.
    assert stages["pool60"].cifar_cpu_s == pytest.approx(60 * (4500 / 5400) * q["flop"])
    jobs = cp.build_grid(stages, plan, trials=2)
    by = {j.name: j for j in jobs}
    per_trial = 3 + 27 + (1 + 1) + (27 + 1) + (5 + 1) + 1  # init/original/retrain, pool, negmerge, TA, FT, retrain eval
    assert len(jobs) == 2 * per_trial
    members = [n for n in by if n.startswith("t1/pool")]
    assert len(members) == 27 and all(by[m].deps == ("t1/original",) for m in members)
    assert set(by["t1/negmerge:sweep"].deps) == set(members)
    ta = [n for n in by if n.startswith("t1/task-arithmetic:sweep:")]
    assert len(ta) == 27 and all(len(by[n].deps) == 1 and by[n].deps[0] in members for n in ta)
    assert set(by["t1/task-arithmetic:eval"].deps) == set(ta)
    assert by["t1/retrain"].deps == ("t1/init",)
    assert set(by["t1/finetune:eval"].deps) == {f"t1/finetune:cand{i}" for i in range(5)}
    assert not any(d.startswith("t0/") for n, j in by.items() if n.startswith("t1/") for d in j.deps)
    # With a worker per job the wall is the critical path; one worker does all the work.
    length, _ = cp.critical_path(jobs)
    assert cp.simulate(jobs, len(jobs)).wall == pytest.approx(length)
    assert cp.simulate(jobs, 1).wall == pytest.approx(sum(j.seconds for j in jobs))


def test_a_v2_search_counts_its_trained_settings_not_its_per_epoch_evaluations(cp, tmp_path):
    """Under the v2 search (§7.3) search_evals is 7 values x 10 epochs + θ_0 = 71 evaluations of 7 (+1
    extension) training runs: the plan's jobs are the 8 runs, each an eighth of the search time."""
    d = tmp_path / "toy-10pct" / "finetune" / "seed-0"
    d.mkdir(parents=True)
    grid = [{"lr": 10 ** (-4 + i / 2)} for i in range(7)]
    d.joinpath("run.json").write_text(json.dumps({
        "method": "finetune", "trial": 0, "provenance": {"cpu": "toy", "threads": 2, "torch": "x"},
        "timings": {"search_s": 800.0, "search_evals": 81, "unlearn_s": 800.0, "eval_s": 10.0, "total_s": 820.0},
        "selection": {"params": {"search": "v2", "grid": grid, "extended": [{"lr": 0.316228}]}}}))
    _record(tmp_path, "retrain", 0, {"original_s": 30.0, "retrain_s": 27.0, "eval_s": 10.0, "total_s": 70.0})
    _record(tmp_path, "negmerge", 0, {"pool_s": 270.0, "pool_trained": 27, "pool_n": 27, "merge_wall_s": 0.1,
                                      "select_s": 41.0, "select_evals": 41, "eval_s": 10.0, "total_s": 330.0})
    stages, plan, notes = cp.cpu_stages(tmp_path, "toy-10pct")
    assert notes == [] and plan["finetune"] == {"type": "search", "n": 8}
    assert stages["finetune:cand"].count == 8 and stages["finetune:cand"].fmnist_s == pytest.approx(100.0)


def test_committed_report_names_its_command_and_date(cp):
    """The committed output names its command, its date, and all three worker counts."""
    text = (SCRIPT.parent / "results" / "cluster_plan.txt").read_text()
    assert text.startswith("cluster_plan:") and "\ncommand: python " in text and "\ndate: " in text
    for n in (1, 8, 64):
        assert f"\n| {n} | " in text
