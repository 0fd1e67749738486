"""Executors: where independent jobs run (DESIGN.md, "Executors").

A job is a function and its inputs, named by content (the store key of the artifact it makes, or a
search candidate). Pool members, search candidates and sweep cells are such jobs. The driver
decides what to send (it checks the store first, so a stored artifact is never computed again),
hands the jobs to an executor, and writes every result itself, as each one arrives: a worker never
sees the store, the runs folder, or the driver's working directory; it receives inputs and returns
outputs. Three executors:

- ``local``: in this process, one job after another (the default; exactly the old inline path);
- ``processes``: N spawned worker processes on this machine, each with its own torch thread count;
- ``ray``: Ray tasks on a local Ray instance or on a cluster (``executor.address``).

Whatever runs a job, it runs it with the same code and the same per-job thread count, so the
results are bit-identical to ``local`` (CPU kernels here are deterministic for a given thread count;
tests/test_executor.py checks pools, searches and sweeps). A job that raises is run once more and
then reported; the other jobs go on. Ctrl-C or SIGTERM stops the workers; what the driver already
wrote stays. A worker whose driver died without clean-up (SIGKILL) ends itself within a second.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from .config import ExecutorName
from .errors import ConfigError, UnlearnbenchError


class JobError(UnlearnbenchError):
    """Jobs that failed twice (their first error and the retry's), reported after the others finished."""


@dataclass
class Job:
    key: str  # what defines the result: a store key, or a candidate's canonical form
    fn: Callable[..., Any]  # runs in the worker: module-level, or a closure cloudpickle can carry
    args: tuple = ()
    label: str = ""
    resources: dict = field(default_factory=dict)  # per job, on top of the executor's (ray: num_gpus)


@dataclass
class Outcome:
    job: Job
    value: Any = None
    error: str | None = None  # the last attempt's error, when every attempt failed
    attempts: int = 0
    worker_s: float = 0.0  # seconds the job's function ran, in its worker
    books: list = field(default_factory=list)  # what the job's Ctx objects recorded (remote executors)

    @property
    def ok(self) -> bool:
        return self.error is None


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# -- what runs in a worker --------------------------------------------------------------------
_contexts: list = []  # Ctx objects rebuilt while a job's payload was unpickled (see Ctx.__reduce__)


def register_context(ctx: Any) -> None:
    _contexts.append(ctx)


def _set_threads(threads: int, device: str) -> None:
    import torch

    from .seeding import deterministic_kernels

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    deterministic_kernels(device)


def run_payload(payload: bytes, threads: int, device: str) -> tuple[Any, list, float]:
    """Run one job in a worker: (its value, what the Ctx objects it carried recorded, seconds).

    The payload is cloudpickled (a method's ``build`` is a closure); a Ctx inside it arrives as a
    detached one holding only the method's declared splits and θ_0 (``Ctx.__reduce__``), and its
    bookkeeping (``info``, ``timings``, ``touched``) comes back for the driver to merge."""
    import cloudpickle

    _set_threads(threads, device)
    _contexts.clear()
    fn, args = cloudpickle.loads(payload)
    t0 = time.perf_counter()
    value = fn(*args)
    seconds = time.perf_counter() - t0
    books = [c.bookkeeping() for c in _contexts]
    _contexts.clear()
    return value, books, seconds


def _worker_init(threads: int, device: str) -> None:
    os.environ.setdefault("UNLEARNBENCH_QUIET", "1")  # the driver's bar counts jobs; workers draw none
    from . import progress

    progress.set_quiet(True)
    _set_threads(threads, device)
    _exit_with_parent()


def _exit_with_parent(every_s: float = 1.0) -> None:
    """End this worker when its driver is gone. A driver killed outright (SIGKILL, the OOM killer)
    runs no clean-up, and a worker in a 40-minute job would otherwise go on to the end with nobody to
    take its result, holding a core the next run needs. A daemon thread polls the parent's pid: when
    the worker is re-parented, the driver has died."""
    import threading

    parent = os.getppid()

    def watch():
        while True:
            time.sleep(every_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="unlearnbench-exit-with-parent", daemon=True).start()


class _Terminated(SystemExit):
    """SIGTERM while remote jobs run: raised in the driver's main thread, so the executor's clean-up
    (stop the workers, keep what was written) runs as it does for Ctrl-C. Exit status 143 (128 + 15),
    what a shell reports for a command ended by SIGTERM."""

    def __init__(self):
        super().__init__(128 + 15)


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """While remote jobs run, turn SIGTERM into ``_Terminated`` (the default action ends the driver at
    once, so its spawned workers would run on unattended). Only in the main thread, the one Python
    delivers signals to, and never where SIGTERM was ignored on purpose; the old handler comes back
    (the default one where the old was not set from Python)."""
    import signal
    import threading

    old = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or old is signal.SIG_IGN:
        yield
        return

    def _raise(signum, frame):
        raise _Terminated()

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if old is None else old)


# -- the executors -------------------------------------------------------------------------------
class Executor:
    """Runs jobs; ``on_done(outcome)`` is called in the driver as each job finishes (in any order),
    which is where the driver writes results. ``run`` returns the outcomes in job order."""

    name = "local"
    retries = 1

    def __init__(self, *, workers: int = 1, threads: int = 0, device: str = "cpu", retries: int = 1,
                 resources: dict | None = None, stack: int = 0):
        self.workers = max(1, int(workers))
        self.threads = int(threads)
        self.device = device
        self.retries = int(retries)
        self.resources = dict(resources or {})
        # > 1: pool members train up to this many at once, as one stacked model (``Stages``,
        # ``stacked.train_many``), each stack one job; 0 or 1: one member per job, as always
        self.stack = int(stack) if int(stack) > 1 else 0

    def _stacked(self, d: dict) -> dict:
        # only when on: a record's provenance says its members were trained stacked (equal to the
        # one-at-a-time ones up to float reordering), and the default's provenance is unchanged
        return {**d, "stack": self.stack} if self.stack else d

    def describe(self) -> dict:
        return self._stacked({"name": self.name, "workers": self.workers, "threads_per_worker": self.threads})

    def run(self, jobs: list[Job], *, desc: str = "jobs", on_done: Callable[[Outcome], None] | None = None,
            unit: str = "job") -> list[Outcome]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @staticmethod
    def _bar(n: int, desc: str, unit: str):
        from . import progress

        return progress.bar(n, desc, unit=unit)


def _describe_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if not isinstance(e, UnlearnbenchError) else str(e)


class LocalExecutor(Executor):
    """In process, in job order: a job's function is called directly (nothing is pickled), so a
    method's ``build`` writes its ``ctx.info`` as it always did."""

    name = "local"

    def describe(self) -> dict:
        return self._stacked({"name": self.name})

    def run(self, jobs, *, desc="jobs", on_done=None, unit="job"):
        out = []
        with self._bar(len(jobs), desc, unit) as bar:
            for job in jobs:
                o = Outcome(job)
                while o.attempts <= self.retries:
                    o.attempts += 1
                    t0 = time.perf_counter()
                    try:
                        o.value, o.error = job.fn(*job.args), None
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as e:  # a plugin's own error too: retried once, then reported
                        o.error = _describe_error(e)
                        o.worker_s = time.perf_counter() - t0
                        continue
                    o.worker_s = time.perf_counter() - t0
                    break
                out.append(o)
                bar.update(1)
                if on_done is not None:
                    on_done(o)
        return out


def _payload(job: Job) -> bytes:
    import cloudpickle

    return cloudpickle.dumps((job.fn, job.args))


class _Remote(Executor):
    """What the processes and Ray executors share: submit, wait for any, retry once, report."""

    def _submit(self, job: Job, payload: bytes) -> Any:  # -> a future / object ref
        raise NotImplementedError

    def _wait(self, pending: list) -> tuple[list, list]:  # -> (done, still pending)
        raise NotImplementedError

    def _result(self, handle: Any) -> tuple[Any, list, float]:
        raise NotImplementedError

    def _broken(self, e: BaseException) -> bool:
        """Whether ``e`` means the worker pool itself died (then it is rebuilt)."""
        return False

    def _restart(self) -> None:
        pass

    def _cancel(self, handles: list) -> None:
        pass

    def run(self, jobs, *, desc="jobs", on_done=None, unit="job"):
        outcomes = [Outcome(j) for j in jobs]
        if not jobs:
            return outcomes
        payloads = [_payload(j) for j in jobs]
        queue = list(range(len(jobs)))
        running: dict[Any, int] = {}
        with self._bar(len(jobs), desc, unit) as bar, _stop_on_sigterm():
            try:
                while queue or running:
                    # keep every worker busy, no more: the rest wait here, so a dead pool loses little
                    while queue and len(running) < self.workers:
                        i = queue.pop(0)
                        outcomes[i].attempts += 1
                        running[self._submit(jobs[i], payloads[i])] = i
                    bar.set_postfix_str(f"{len(running)} running, {len(queue)} queued", refresh=False)
                    done, _ = self._wait(list(running))
                    for h in done:
                        if h not in running:  # requeued below, when the pool died under it
                            continue
                        i = running.pop(h)
                        o = outcomes[i]
                        try:
                            o.value, o.books, o.worker_s = self._result(h)
                            o.error = None
                        except (KeyboardInterrupt, SystemExit):
                            raise
                        except BaseException as e:
                            o.error = _describe_error(e)
                            if self._broken(e):  # every job in flight died with the pool: start again
                                self._restart()
                                queue[:0] = sorted(running.values())
                                running.clear()
                            if o.attempts <= self.retries:
                                queue.insert(0, i)
                                continue
                        bar.update(1)
                        if on_done is not None:
                            on_done(o)
            except BaseException:
                self._cancel(list(running))
                raise
        return outcomes


class ProcessExecutor(_Remote):
    """``workers`` spawned processes, ``threads`` torch threads each (spawn, not fork: a forked
    torch with its thread pool already started can deadlock)."""

    name = "processes"

    def __init__(self, **kw):
        super().__init__(**kw)
        self._pool = None

    def _ensure(self):
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_worker_init, initargs=(self.threads, self.device))
        return self._pool

    def _submit(self, job, payload):
        return self._ensure().submit(run_payload, payload, self.threads, self.device)

    def _wait(self, pending):
        from concurrent.futures import FIRST_COMPLETED, wait

        done, rest = wait(pending, return_when=FIRST_COMPLETED)
        return list(done), list(rest)

    def _result(self, handle):
        return handle.result()

    def _broken(self, e):
        from concurrent.futures.process import BrokenProcessPool

        return isinstance(e, BrokenProcessPool)

    def _restart(self):
        self._kill()

    def _cancel(self, handles):
        for h in handles:
            h.cancel()
        self._kill()

    def _kill(self):
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list(getattr(pool, "_processes", {}).values())  # a running job does not stop on cancel
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)

    def close(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class RayExecutor(_Remote):
    """Ray tasks. No address: a local Ray instance with ``workers x threads`` CPUs is started;
    ``address=auto`` (or ``ray://host:port``, or a head's ``host:port``) joins a running cluster.
    Each task asks for ``threads`` CPUs (and the job's or executor's ``num_gpus``), so Ray places no
    more jobs on a node than it has cores. Ray's own retries are off: a failed job is retried once
    by this driver, like every executor's."""

    name = "ray"

    def __init__(self, *, address: str = "", **kw):
        super().__init__(**kw)
        self.address = address
        self._remote = None
        self._started = False

    def describe(self):
        return {**super().describe(), "address": self.address or "(local instance)"}

    def _ensure(self):
        if self._remote is not None:
            return self._remote
        try:
            import ray
        except ImportError:
            raise ConfigError("executor=ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')") from None
        if not ray.is_initialized():
            # the job's code is importable on every node (the package is installed there); nothing of
            # the driver's cwd travels, and the workers never see the store
            kw: dict = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False,
                        "configure_logging": False}
            if self.address:
                kw["address"] = self.address
            else:
                kw["num_cpus"] = self.workers * max(1, self.threads)
            try:
                ray.init(**kw)
            except Exception as e:  # a wrong address, no cluster there
                raise ConfigError(f"executor=ray could not start or join Ray (address {self.address or 'local'!r}): "
                                  f"{type(e).__name__}: {e}; check -o executor.address (auto joins the cluster "
                                  "`ray start --head` made on this machine)") from None
            self._started = True
        self._remote = ray.remote(run_payload)
        return self._remote

    def _submit(self, job, payload):
        remote = self._ensure()
        res = {**self.resources, **job.resources}
        return remote.options(num_cpus=max(1, self.threads), num_gpus=float(res.get("num_gpus", 0)),
                              max_retries=0, retry_exceptions=False).remote(payload, self.threads, self.device)

    def _wait(self, pending):
        import ray

        return ray.wait(pending, num_returns=1)

    def _result(self, handle):
        import ray

        try:
            return ray.get(handle)
        except ray.exceptions.RayTaskError as e:  # the job's own exception, unwrapped
            cause = e.as_instanceof_cause()
            raise cause from None

    def _cancel(self, handles):
        import ray

        for h in handles:
            try:
                ray.cancel(h, force=True)
            except Exception:
                pass

    def close(self):
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
        self._remote = None


_open: dict[tuple, Executor] = {}


def executor_for(cfg: Any, device: str = "cpu") -> Executor:
    """The executor the ``executor`` config section names; one per setting per process (workers
    started once serve every pool, search and cell of a run or sweep)."""
    name = ExecutorName.of(cfg.name, "executor.name") if cfg is not None else ExecutorName.local
    stack = int(getattr(cfg, "stack", 0)) if cfg is not None else 0
    if name == ExecutorName.local:
        return LocalExecutor(device=device, retries=int(getattr(cfg, "retries", 1)) if cfg is not None else 1,
                             stack=stack)
    workers = int(cfg.workers) or cores()
    threads = int(cfg.threads_per_worker) or max(1, cores() // workers)
    key = (str(name), workers, threads, str(cfg.address), float(cfg.num_gpus), device, int(cfg.retries), stack)
    if key not in _open:
        kw = dict(workers=workers, threads=threads, device=device, retries=int(cfg.retries),
                  resources={"num_gpus": float(cfg.num_gpus)} if cfg.num_gpus else {}, stack=stack)
        _open[key] = RayExecutor(address=str(cfg.address), **kw) if name == ExecutorName.ray else ProcessExecutor(**kw)
    return _open[key]


def close_all() -> None:
    while _open:
        _, ex = _open.popitem()
        try:
            ex.close()
        except Exception as e:  # shutting down: say so, never mask the run's own outcome
            print(f"unlearnbench: closing the {ex.name} executor: {e}", file=sys.stderr)


def failures(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.ok]


import atexit  # noqa: E402  (workers are stopped when the driver exits, however it exits)

atexit.register(close_all)
