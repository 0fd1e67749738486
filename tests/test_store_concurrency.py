"""Several processes sharing one store (issue 14, acceptance 7): an artifact is computed once in
total however many ask for it at once, a reader never sees an artifact being rewritten as
missing or corrupt, and the lock of a process that died is taken over."""
from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from unlearnbench.store import Store

# The workers are forked from the test process (torch already imported: a fresh interpreter takes
# seconds to import it on a loaded machine); each asks through its own Store, as another run would.
FORK = multiprocessing.get_context("fork")


def _ask(root: str, work: str, name: str) -> None:
    work_ = Path(work)

    def compute():
        with open(work_ / "runs.txt", "a") as f:  # how many times it ran, over all processes
            f.write(name + "\n")
        (work_ / "started").write_text(name)
        for _ in range(400):  # hold the lock until the test says so
            if (work_ / "release").exists():
                break
            time.sleep(0.05)
        return {"w": torch.arange(5.0)}

    st = Store(root)
    (work_ / f"asking-{name}").write_text("")
    t0 = time.perf_counter()
    out, _, computed = st.get_or_compute("pool", {"member": 1}, compute, "M")
    (work_ / f"out-{name}.json").write_text(json.dumps({"computed": computed, "w": out["w"].tolist(),
                                                        "waited": time.perf_counter() - t0}))


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path.name} never appeared"
        time.sleep(0.02)


def _py(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def _start(target, *args):
    p = FORK.Process(target=target, args=args)
    p.start()
    return p


def test_two_processes_asking_for_one_artifact_compute_it_once(tmp_path):
    root, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    first = _start(_ask, str(root), str(work), "first")
    _wait_for(work / "started")  # the first is computing, holding the artifact's lock
    second = _start(_ask, str(root), str(work), "second")
    _wait_for(work / "asking-second")
    time.sleep(0.5)  # the second is now waiting on the lock
    (work / "release").write_text("")
    for p in (first, second):
        p.join(60)
        assert p.exitcode == 0
    outs = {n: json.loads((work / f"out-{n}.json").read_text()) for n in ("first", "second")}
    assert (work / "runs.txt").read_text().split() == ["first"]  # computed once in total
    assert outs["first"]["computed"] and not outs["second"]["computed"]  # the second waited, then read
    assert outs["second"]["w"] == outs["first"]["w"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert outs["second"]["waited"] > 0.3
    left = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert len(left) == 2 and not any(n.endswith((".lock", ".tmp")) for n in left)  # data + sidecar only


def _rewrite(root: str, key: str, seconds: float, started: str, count: str) -> None:
    st, n = Store(root), 0
    Path(started).write_text("")
    until = time.monotonic() + seconds
    while time.monotonic() < until:  # two contents under one key: every rewrite really replaces the data
        st.put("pool", key, {"w": torch.full((2000,), float(n % 2))}, {"m": 0}, "M")
        n += 1
    Path(count).write_text(str(n))


def test_a_reader_never_sees_an_artifact_being_rewritten_as_missing_or_corrupt(tmp_path, capsys):
    st = Store(tmp_path / "store")
    key = st.key({"m": 0})
    st.put("pool", key, {"w": torch.zeros(2000)}, {"m": 0}, "M")
    writer = _start(_rewrite, str(tmp_path / "store"), key, 3.0, str(tmp_path / "go"), str(tmp_path / "n"))
    _wait_for(tmp_path / "go")
    reads, seen = 0, set()
    end = time.monotonic() + 30
    while writer.is_alive() and time.monotonic() < end:
        assert st.has("pool", key)  # the sidecar is never removed first
        tensors, _ = st.get("pool", key, "M")  # raises on a missing or mismatched pair
        seen.add(float(tensors["w"][0]))
        reads += 1
    writer.join(30)
    assert writer.exitcode == 0
    rewrites = int((tmp_path / "n").read_text())
    assert rewrites > 20 and reads > 20, (rewrites, reads)
    assert seen <= {0.0, 1.0} and st.stats["corrupt"] == 0
    assert "corrupt" not in capsys.readouterr().err


HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from unlearnbench.store import Store

    st = Store(sys.argv[1])
    with st.lock("pool", sys.argv[2]):
        Path(sys.argv[3]).write_text("")
        time.sleep(120)
""")


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path):
    st = Store(tmp_path / "store")
    key = st.key({"m": 7})
    lock = tmp_path / "store" / "pool" / key[:2] / f"{key}.lock"
    holder = _py(HOLD, str(tmp_path / "store"), key, str(tmp_path / "held"))
    try:
        _wait_for(tmp_path / "held")
        with open(lock, "a") as f:  # really held by the other process
            with pytest.raises(BlockingIOError):
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.kill(holder.pid, signal.SIGKILL)  # dies holding it: its lock file stays behind
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert lock.exists()
    signal.signal(signal.SIGALRM, lambda *a: pytest.fail("the stale lock was not taken over"))
    signal.alarm(30)
    try:
        out, _, computed = st.get_or_compute("pool", {"m": 7}, lambda: {"w": torch.ones(3)}, "M")
    finally:
        signal.alarm(0)
    assert computed and out["w"].tolist() == [1.0] * 3
    assert not lock.exists()  # the new holder cleaned up after itself


def test_two_threads_sharing_one_store_compute_an_artifact_once(tmp_path):
    """Parallel workers may be threads of one process: the lock holds between them too."""
    import threading

    st, calls, outs = Store(tmp_path), [], []

    def compute():
        calls.append(1)
        time.sleep(0.3)
        return {"w": torch.ones(3)}

    def ask():
        outs.append(st.get_or_compute("pool", {"m": 3}, compute, "M")[2])

    workers = [threading.Thread(target=ask) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert len(calls) == 1 and sorted(outs) == [False, False, True]
