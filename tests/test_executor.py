"""Executors (issue 15): the job seam, retries, dead workers, Ctrl-C, and the same bits as local for a
pool, a search and a sweep, with worker processes and with Ray on a simulated two-node cluster."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cloudpickle
import pytest

from unlearnbench.executor import Job, LocalExecutor, ProcessExecutor

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import a test module


# -- jobs the workers run -----------------------------------------------------------------------------
def square(x):
    return x * x


def fail_first(marker: str, x):
    """Fails on its first attempt (a marker file remembers it), succeeds on the retry."""
    p = Path(marker)
    if not p.exists():
        p.write_text("tried")
        raise RuntimeError("transient")
    return x + 100


def always_fail(x):
    raise ValueError(f"bad input {x}")


def die(marker: str):
    """Kills its worker process outright (a segfault, the OOM killer) on the first attempt."""
    p = Path(marker)
    if not p.exists():
        p.write_text("died")
        os._exit(17)
    return "survived"


def threads_here(_):
    import torch

    return torch.get_num_threads()


@pytest.fixture(scope="module")
def procs():
    ex = ProcessExecutor(workers=2, threads=1)
    yield ex
    ex.close()


@pytest.mark.parametrize("kind", ["local", "processes"])
def test_results_come_back_in_job_order_and_each_is_handed_to_the_driver(kind, procs):
    ex = LocalExecutor() if kind == "local" else procs
    seen = []
    out = ex.run([Job(str(i), square, (i,)) for i in range(7)], on_done=lambda o: seen.append(o.job.key))
    assert [o.value for o in out] == [i * i for i in range(7)]
    assert sorted(seen, key=int) == [str(i) for i in range(7)]  # every result went through on_done
    assert all(o.ok and o.attempts == 1 for o in out)


@pytest.mark.parametrize("kind", ["local", "processes"])
def test_a_failed_job_is_retried_once_then_reported_and_the_rest_go_on(kind, procs, tmp_path):
    ex = LocalExecutor() if kind == "local" else procs
    jobs = [Job("a", square, (3,)), Job("b", fail_first, (str(tmp_path / "m"), 1)), Job("c", always_fail, (5,)),
            Job("d", square, (4,))]
    out = ex.run(jobs)
    assert [o.value for o in out if o.ok] == [9, 101, 16]
    assert out[1].ok and out[1].attempts == 2  # the transient failure cost one retry
    bad = out[2]
    assert not bad.ok and bad.attempts == 2 and "bad input 5" in bad.error


def test_a_dead_worker_loses_nothing_finished_and_its_job_is_retried(procs, tmp_path):
    jobs = [Job("d", die, (str(tmp_path / "m"),))] + [Job(str(i), square, (i,)) for i in range(5)]
    out = procs.run(jobs)
    assert all(o.ok for o in out), [o.error for o in out]
    assert out[0].value == "survived" and out[0].attempts == 2
    assert [o.value for o in out[1:]] == [i * i for i in range(5)]


def test_workers_run_with_their_own_thread_count(procs):
    out = procs.run([Job(str(i), threads_here, (i,)) for i in range(2)])
    assert [o.value for o in out] == [1, 1]


def test_ctrl_c_stops_the_workers_and_keeps_what_the_driver_wrote(tmp_path):
    ex = ProcessExecutor(workers=1, threads=1)
    written = []

    def on_done(o):
        written.append(o.job.key)
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            ex.run([Job(str(i), square, (i,)) for i in range(4)], on_done=on_done)
        assert written == ["0"]  # the finished job was handed over before the interrupt
        assert ex._pool is None  # the workers were stopped, not left running the queue
    finally:
        ex.close()


def test_executor_is_an_execution_setting_not_part_of_the_config_hash(host):
    from unlearnbench.config import resolve

    a = resolve(host, method="negmerge", scenario="digits-10pct")
    b = resolve(host, method="negmerge", scenario="digits-10pct",
                overrides=["executor=processes", "executor.workers=2", "executor.threads_per_worker=1"])
    assert str(b.cfg.executor.name) == "processes" and int(b.cfg.executor.workers) == 2
    assert a.hash == b.hash and a.variant == b.variant == [] and a.run_name == b.run_name


@pytest.mark.parametrize("bad, says", [
    ("executor=threads", "executor"), ("executor.workers=-1", "negative"),
    ("executor.address=auto", "read only by executor=ray"), ("executor.num_gpus=-1", "negative"),
])
def test_bad_executor_settings_are_one_clear_error(bad, says):
    from click.testing import CliRunner

    from unlearnbench.cli import main

    r = CliRunner().invoke(main, ["config", "-o", bad])
    assert r.exit_code == 2, r.output
    assert says in r.output and "Traceback" not in r.output


# -- the same bits as local --------------------------------------------------------------------------
VOLATILE = {"timings", "provenance", "trained_now"}


def comparable(rec: dict) -> dict:
    """A record without what says how it ran: timings (``*_s``, ``seconds``), provenance, what this
    process trained, and the executor section of its config."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if not (k.endswith("_s") or k in ("seconds", "_path"))}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    out = {k: strip(v) for k, v in rec.items() if k not in VOLATILE}
    out["config"] = {k: v for k, v in out["config"].items() if k not in ("executor", "seeds")}  # seeds: run vs sweep
    return out


DIGITS = ["-o", "threads=1", "-o", "pool.size=4", "-o", "scenario.forget_pct=10"]


def _sweep(tmp: Path, tag: str, methods: str, extra: list[str], seeded: bool = False) -> dict:
    from click.testing import CliRunner

    from unlearnbench.cli import main

    if seeded:
        _shared_stages(LOCAL_STORE[0], tmp / f"store-{tag}")
    runs = tmp / f"runs-{tag}"
    args = ["sweep", "--methods", methods, "--scenarios", "digits-10pct", "--seeds", "0", *DIGITS, *extra,
            "--store", str(tmp / f"store-{tag}"), "--runs-dir", str(runs), "--quiet"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "FAILED" not in r.output, r.output
    recs = [json.loads(p.read_text()) for p in runs.rglob("run.json")]
    return {r["method"]: r for r in recs}


def _shared_stages(src: Path, dest: Path) -> None:
    """A store holding src's original and Retrain (and their metrics), not its pool: only the job
    under test computes."""
    import shutil

    for kind in ("init", "original", "retrain", "manifest", "metrics"):
        shutil.copytree(src / kind, dest / kind, ignore=shutil.ignore_patterns("*.lock"))


def _run(tmp: Path, tag: str, method: str, extra: list[str]) -> dict:
    from click.testing import CliRunner

    from unlearnbench.cli import main

    _shared_stages(LOCAL_STORE[0], tmp / f"store-{tag}")
    runs = tmp / f"runs-{tag}"
    args = ["run", "--method", method, "--scenario", "digits-10pct", "--seeds", "0", *DIGITS, *extra,
            "--store", str(tmp / f"store-{tag}"), "--runs-dir", str(runs), "--quiet"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    (p,) = runs.rglob("run.json")
    return json.loads(p.read_text())


PROCESSES = ["-o", "executor=processes", "-o", "executor.workers=2", "-o", "executor.threads_per_worker=1"]


LOCAL_STORE: list[Path] = []


@pytest.fixture(scope="module")
def local_records(tmp_path_factory):
    """One local sweep (1 thread): NegMerge reads a pool, fine-tuning searches its step size."""
    tmp = tmp_path_factory.mktemp("local")
    recs = _sweep(tmp, "local", "negmerge,finetune", [])
    LOCAL_STORE[:] = [tmp / "store-local"]
    return recs


def _same(a: dict, b: dict) -> None:
    assert a["weights_digest"] == b["weights_digest"]
    ca, cb = comparable(a), comparable(b)
    assert ca == cb, [k for k in ca if ca[k] != cb.get(k)]


@pytest.mark.slow
def test_a_pool_and_a_search_with_processes_give_the_local_records(local_records, tmp_path):
    pool = _run(tmp_path, "p-pool", "negmerge", PROCESSES)
    assert pool["timings"]["pool_trained"] == 4 and pool["provenance"]["executor"]["name"] == "processes"
    _same(local_records["negmerge"], pool)
    search = _run(tmp_path, "p-search", "finetune", PROCESSES)
    grid = search["selection"]["params"]["grid"] + search["selection"]["params"]["extended"]
    # every candidate trained in a worker, each of its 10 epochs measured here, θ_0 first (PROTOCOL §7.3)
    assert len(search["selection"]["curve"]) == 1 + 10 * len(grid) and len(grid) >= 7
    _same(local_records["finetune"], search)


@pytest.mark.slow
def test_a_sweep_with_processes_gives_the_local_records(local_records, tmp_path):
    got = _sweep(tmp_path, "p-sweep", "negmerge,finetune", PROCESSES)
    assert set(got) == set(local_records)
    for name in got:
        assert got[name]["provenance"]["executor"]["job"] == "cell"
        _same(local_records[name], got[name])


@pytest.mark.slow
def test_ray_with_no_address_starts_a_local_instance_and_stops_it():
    ray = pytest.importorskip("ray")
    from unlearnbench.executor import RayExecutor

    assert not ray.is_initialized()
    ex = RayExecutor(workers=2, threads=1)
    try:
        out = ex.run([Job(str(i), square, (i,)) for i in range(3)] + [Job("t", threads_here, (0,))])
        assert [o.value for o in out] == [0, 1, 4, 1]
        assert ray.cluster_resources().get("CPU") == 2  # workers x threads, nothing of an outside cluster
    finally:
        ex.close()
    assert not ray.is_initialized()  # the instance it started is gone: nothing left running


@pytest.fixture(scope="module")
def ray_cluster():
    """Ray's own simulated cluster: a head and a second node, one CPU each, on loopback."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 300 << 20})
    cluster.add_node(num_cpus=1, object_store_memory=300 << 20)
    cluster.wait_for_nodes()
    yield cluster
    from unlearnbench.executor import close_all

    close_all()
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_ray_on_a_two_node_cluster_gives_the_local_records(local_records, ray_cluster, tmp_path):
    import ray

    on_ray = ["-o", "executor=ray", "-o", f"executor.address={ray_cluster.address}", "-o", "executor.workers=2",
              "-o", "executor.threads_per_worker=1"]
    pool = _run(tmp_path, "r-pool", "negmerge", on_ray)
    assert len({n["NodeID"] for n in ray.nodes() if n["Alive"]}) == 2
    _same(local_records["negmerge"], pool)
    _same(local_records["finetune"], _run(tmp_path, "r-search", "finetune", on_ray))
    got = _sweep(tmp_path, "r-sweep", "negmerge,finetune", on_ray, seeded=True)  # wave 1: the pool on Ray
    for name in got:
        _same(local_records[name], got[name])


@pytest.mark.slow
def test_nothing_the_store_holds_is_sent_again(local_records, tmp_path, monkeypatch):
    import shutil

    from unlearnbench import executor as ex_mod

    sent = []
    real = ex_mod.ProcessExecutor.run
    monkeypatch.setattr(ex_mod.ProcessExecutor, "run", lambda self, jobs, **kw: sent.extend(jobs) or real(self, jobs, **kw))
    shutil.copytree(LOCAL_STORE[0], tmp_path / "store-full", ignore=shutil.ignore_patterns("*.lock"))
    from click.testing import CliRunner

    from unlearnbench.cli import main

    args = ["run", "--method", "negmerge", "--scenario", "digits-10pct", "--seeds", "0", *DIGITS, *PROCESSES,
            "--store", str(tmp_path / "store-full"), "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    (p,) = (tmp_path / "runs").rglob("run.json")
    rec = json.loads(p.read_text())
    assert sent == [] and rec["timings"]["pool_trained"] == 0  # every member was stored: no job dispatched
    _same(local_records["negmerge"], rec)


# -- a driver that dies: its workers must not run on unattended ---------------------------------------
DRIVER = """
import sys, time
from pathlib import Path
from unlearnbench.executor import Job, ProcessExecutor

def sleeper(pidfile):
    import os
    Path(pidfile).write_text(str(os.getpid()))
    time.sleep(120)  # a long job: the worker is busy when its driver goes
    return "finished"

ex = ProcessExecutor(workers=1, threads=1)
ex.run([Job("long", sleeper, (sys.argv[1],))])
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no one has reaped yet counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _driver_with_a_busy_worker(tmp_path):
    import subprocess
    import time

    pidfile = tmp_path / "worker.pid"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(pidfile)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env={**os.environ, "UNLEARNBENCH_QUIET": "1"})
    deadline = time.monotonic() + 120
    while not (pidfile.exists() and pidfile.read_text()):
        assert driver.poll() is None, driver.stdout.read().decode()
        assert time.monotonic() < deadline, "the worker never started its job"
        time.sleep(0.2)
    return driver, int(pidfile.read_text())


def _gone_within(pid: int, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_sigterm_to_the_driver_stops_its_workers_and_exits_143(tmp_path):
    import signal

    driver, worker = _driver_with_a_busy_worker(tmp_path)
    try:
        driver.send_signal(signal.SIGTERM)
        assert driver.wait(timeout=30) == 143  # the clean-up ran (the default action would give -15)
        assert _gone_within(worker, 5), "the driver ended, its worker runs on"
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
        driver.kill()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_worker_whose_driver_was_killed_outright_ends_itself(tmp_path):
    import signal

    driver, worker = _driver_with_a_busy_worker(tmp_path)
    try:
        driver.kill()  # SIGKILL: no handler, no clean-up in the driver
        driver.wait(timeout=30)
        assert _gone_within(worker, 10), "an orphaned worker ran on with its 120 s job"
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
