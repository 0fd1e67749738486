"""Crash guarantees (issue 14, acceptance 9): a run or a sweep killed with SIGKILL in the middle of
the pool keeps every finished artifact and no torn file, and the rerun's records equal those of an
uninterrupted run bit for bit (every field but timings, selection.seconds, info.merge_cost and
trained_now; weights_digest included). Also: a complete store shared read-only still runs.

To stay short, the reference is one uninterrupted run on its own fresh store; each killed run
starts from a copy of that store WITHOUT its pool (so it trains every pool member itself, but
not θ_0 and the Retrain again): what a run finds after another method ran on the scenario."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ARGS = ["--scenario", "digits-10pct", "--seeds", "0", "-o", "pool.size=6", "-o", "threads=1", "-q"]
IGNORED = ("timings", "trained_now")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from unlearnbench.cli import main; sys.exit(main())", *args]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _comparable(path: Path) -> str:
    rec = json.loads(path.read_text())
    for k in IGNORED:
        rec.pop(k)
    if rec.get("selection"):
        rec["selection"].pop("seconds", None)
    rec["info"].pop("merge_cost", None)
    return json.dumps(rec, sort_keys=True)


def _diff(a: Path, b: Path) -> list[str]:
    x, y = json.loads(_comparable(a)), json.loads(_comparable(b))
    out = []

    def walk(u, v, at):
        if isinstance(u, dict) and isinstance(v, dict):
            for k in sorted(set(u) | set(v)):
                walk(u.get(k), v.get(k), f"{at}.{k}")
        elif u != v:
            out.append(f"{at}: {u!r:.80} != {v!r:.80}")

    walk(x, y, "")
    return out


def _records(runs: Path) -> dict[str, Path]:
    return {p.relative_to(runs).parts[1]: p for p in runs.rglob("run.json")}


def _members(store: Path) -> int:
    return len(list((store / "pool").rglob("*.json"))) if (store / "pool").exists() else 0


SWEEP = ["sweep", "--methods", "negmerge,uniform", "--scenarios", "digits-10pct", "--seeds", "0",
         "-o", "pool.size=6", "-o", "threads=1", "-q"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, then the uninterrupted sweep (on the same store, so it trains nothing:
    a sweep's record keeps the config's seed list, a run's the --seeds it was given)."""
    root = tmp_path_factory.mktemp("crash-reference")
    store, runs, sweep_runs = root / "store", root / "runs", root / "sweep-runs"
    subprocess.run(_cli("run", "--method", "negmerge", *ARGS, "--store", str(store), "--runs-dir", str(runs)),
                   env=_env(), check=True, capture_output=True, timeout=600)
    assert _members(store) == 6
    subprocess.run(_cli(*SWEEP, "--store", str(store), "--runs-dir", str(sweep_runs)),
                   env=_env(), check=True, capture_output=True, timeout=600)
    return store, _records(runs), _records(sweep_runs)


def _store_without_pool(reference_store: Path, dest: Path) -> Path:
    shutil.copytree(reference_store, dest, ignore=lambda d, names: ["pool"] if Path(d) == reference_store else [])
    assert _members(dest) == 0
    return dest


def _kill_during_pool(cmd: list[str], store: Path, at: int = 2) -> int:
    """Start ``cmd``, SIGKILL it as soon as ``store`` holds ``at`` pool members; return how many it kept."""
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 300
        while _members(store) < at:
            assert p.poll() is None, f"it ended before the pool was half stored: {p.stderr.read().decode()}"
            assert time.monotonic() < end
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGKILL
    kept = _members(store)
    assert at <= kept < 6, kept
    torn = [q for q in store.rglob("*") if q.name.endswith((".tmp",))]
    assert torn == [], torn  # no torn file: temporary files die with the process or never exist
    for side in (store / "pool").rglob("*.json"):  # every kept member is whole
        rec = json.loads(side.read_text())
        data = side.with_suffix(".safetensors")
        import hashlib

        assert hashlib.sha256(data.read_bytes()).hexdigest() == rec["sha256"]
    return kept


def test_a_run_killed_during_the_pool_reruns_to_the_same_record(reference, tmp_path):
    ref_store, ref, _ = reference
    store, runs = _store_without_pool(ref_store, tmp_path / "store"), tmp_path / "runs"
    cmd = _cli("run", "--method", "negmerge", *ARGS, "--store", str(store), "--runs-dir", str(runs))
    kept = _kill_during_pool(cmd, store)
    assert not list(runs.rglob("run.json"))  # no record of a run that did not finish
    subprocess.run([*cmd, "--json"], env=_env(), check=True, capture_output=True, timeout=600)
    (got,) = _records(runs).values()
    rec = json.loads(got.read_text())
    assert rec["timings"]["pool_trained"] == 6 - kept  # the kept members were reused, not retrained
    assert _comparable(got) == _comparable(ref[got.parent.parent.name])


def test_a_sweep_killed_during_the_pool_reruns_to_the_same_records(reference, tmp_path):
    ref_store, _, ref = reference
    store, runs = _store_without_pool(ref_store, tmp_path / "store"), tmp_path / "runs"
    cmd = _cli(*SWEEP, "--store", str(store), "--runs-dir", str(runs))
    _kill_during_pool(cmd, store)
    assert not list(runs.rglob("run.json"))
    out = subprocess.run(cmd, env=_env(), check=True, capture_output=True, text=True, timeout=600)
    assert "2 run(s) now" in out.stdout, out.stdout
    got = _records(runs)
    assert sorted(got) == sorted(ref)
    for name in ref:
        assert _comparable(got[name]) == _comparable(ref[name]), (name, _diff(got[name], ref[name]))


def test_a_complete_store_shared_read_only_still_runs(reference, tmp_path, monkeypatch):
    """Nothing is written to a store that holds everything (the manifest was rewritten on every
    run). "Read-only" is os.access saying so (the suite runs as root; see tests/test_store.py),
    and the store's files are checked to be untouched."""
    from click.testing import CliRunner

    from unlearnbench.cli import main

    ref_store, _, _ = reference
    store = tmp_path / "store"
    shutil.copytree(ref_store, store)

    def snapshot():
        return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in store.rglob("*"))

    before = snapshot()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **kw: False if mode & os.W_OK and str(
        os.path.abspath(p)).startswith(str(store)) else real_access(p, mode, *a, **kw))
    r = CliRunner().invoke(main, ["run", "--method", "negmerge", *ARGS, "--store", str(store),
                                  "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    assert snapshot() == before
