"""A conformance check for method plugins, for a third party's own test suite.

pytester's idea, for unlearning methods: one call runs your installed method the way the
suite will, and fails with a message that says what to fix::

    from unlearnbench.testing import check_method

    def test_my_method_conforms(tmp_path):
        check_method("my-method", tmp_path)

It runs on ``digits-10pct`` (bundled with scikit-learn, CPU, no download; the original,
Retrain and any pool are trained once into ``workdir/store``, about a minute cold on one
core) and checks what every built-in method is held to:

1. it is registered through the plugin host (an entry point, or ``host=`` with it added);
2. it returns a state dict for the scenario's architecture: the same keys, shapes and
   dtypes as θ_0, every floating-point entry finite;
3. it leaves θ_0 alone: the stored original is bit for bit the same afterwards (a method
   that edits ``ctx.original()``'s tensors in place would corrupt every later run);
4. it reads only the splits it declares (the suite enforces this; a violation is reported
   here as a failure, not a crash), never test data;
5. it is deterministic: two complete runs of one trial give bit-identical weights and
   metrics, so its leaderboard cells can be regenerated.

Declared splits it never read are reported in the returned notes: they would show in the
Used-splits column although unused.

Installed, this module is also a pytest plugin (entry point ``pytest11``), so a third party's
tests get its fixtures without a conftest:

- ``check_method``: the function above, storing its models in the session's store, so the
  original and Retrain train once however many methods a session checks;
- ``unlearnbench_store``: that session-wide ``Store``;
- ``unlearnbench_host``: a fresh plugin host with the installed entry points.

::

    def test_my_method_conforms(check_method):
        check_method("my-method")

Loading the plugin imports neither torch nor the suite's pipeline (pytest loads it in every
session of an environment that has unlearnbench); the fixtures import them when used.
Disable it with ``-p no:unlearnbench``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from .config import DEFAULT_SCENARIO

try:
    import pytest
except ImportError:  # check_method works without pytest; only the fixtures need it
    pytest = None  # type: ignore[assignment]


class ConformanceError(AssertionError):
    """A method plugin does not meet the suite's contract; the message says which part."""


def check_method(name: str, workdir: str | Path, *, scenario: str = DEFAULT_SCENARIO,
                 overrides: Iterable[str] = (), trial: int = 0, host: Any = None, store: Any = None) -> dict:
    """Run method ``name`` through the suite and check the contract above; returns a report
    (the run record's metrics, the weights digest, notes, and the first full run's record).
    Raises ConformanceError. Models go to ``store`` (a ``Store``), by default ``workdir/store``;
    run records below ``workdir``."""
    import torch

    from .config import resolve
    from .context import Ctx
    from .errors import SplitAccessError, UnlearnbenchError
    from .plugins import PluginHost
    from .runner import run_trial
    from .stages import Stages
    from .store import Store, tensor_digest

    if host is None:
        host = PluginHost()
        host.load_entry_points()
    if name not in host.methods:  # 1
        raise ConformanceError(f"method {name!r} is not registered; installed: {', '.join(host.methods.names())}. "
                               "Add an entry point in the 'unlearnbench' group (see the README's plugin section)")
    workdir = Path(workdir)
    if store is None:
        store = Store(workdir / "store")
    overrides = list(overrides)
    res = resolve(host, method=name, scenario=scenario, overrides=overrides)
    meth = res.method
    if "test" in meth.uses:
        raise ConformanceError(f"method {name!r} declares 'test': no method may read test data (PROTOCOL §1.4)")

    # 2-4: one unlearning through ctx, where the state itself can be inspected
    task = res.scenario.build_task(res.cfg.scenario, trial, None)
    stages = Stages(task, store)
    theta0 = stages.original()
    before = tensor_digest(theta0)
    ctx = Ctx(stages, meth, res.cfg.method, res.rule, res.cfg.selection, res.cfg.pool)
    try:
        result = meth.unlearn(ctx)
    except SplitAccessError as e:
        raise ConformanceError(f"method {name!r} reached for data it does not declare: {e}") from None
    state = result.state
    ref = task.new_model().state_dict()
    if set(state) != set(ref):
        raise ConformanceError(f"method {name!r} returned keys that differ from {task.arch}'s state dict: missing "
                               f"{sorted(set(ref) - set(state))[:5]}, extra {sorted(set(state) - set(ref))[:5]}")
    for k, v in ref.items():
        s = state[k]
        if not isinstance(s, torch.Tensor) or s.shape != v.shape or s.dtype != v.dtype:
            got = f"{tuple(s.shape)} {s.dtype}" if isinstance(s, torch.Tensor) else type(s).__name__
            raise ConformanceError(f"method {name!r}: {k!r} is {got}, the model's is {tuple(v.shape)} {v.dtype}")
        if s.is_floating_point() and not torch.isfinite(s).all():
            raise ConformanceError(f"method {name!r}: {k!r} has non-finite values")
    if tensor_digest(stages.original()) != before:  # 3
        raise ConformanceError(f"method {name!r} changed θ_0 in place; copy before editing (ctx.original() returns "
                               "a copy, ctx.new_model(state) a fresh model)")
    digest = tensor_digest(state)

    # 5: two complete runs, through the runner as the CLI does
    recs = []
    for run in ("a", "b"):
        try:
            recs.append(run_trial(res, trial, store=store, runs_dir=workdir / f"runs-{run}", data_root=None))
        except UnlearnbenchError as e:
            raise ConformanceError(f"method {name!r} failed a full run: {e}") from None
    got = [r["weights_digest"]["unlearned"] for r in recs]
    if not (got[0] == got[1] == digest):
        raise ConformanceError(f"method {name!r} is not deterministic: three runs of trial {trial} gave weights "
                               f"{digest[:12]}, {got[0][:12]}, {got[1][:12]}. Draw randomness from ctx "
                               "(ctx.train's streams, or a generator seeded from the trial), not the global RNG")
    if recs[0]["metrics"] != recs[1]["metrics"]:
        raise ConformanceError(f"method {name!r}: two runs gave different metrics {recs[0]['metrics']} and "
                               f"{recs[1]['metrics']}")
    notes = []
    unused = sorted(set(meth.uses) - ctx.touched)
    if unused:
        notes.append(f"declares {unused} but never read them: they still count in its Used-splits column")
    return {"metrics": recs[0]["metrics"], "used_splits": recs[0]["used_splits"], "weights_digest": digest,
            "notes": notes, "record": recs[0]}


# -- the pytest plugin ----------------------------------------------------------------------------------
# Fixture names carry the package's name where a short one (`store`, `host`) could shadow or be
# shadowed by a project's own fixtures; `check_method` is this module's function, by its own name.

if pytest is not None:

    @pytest.fixture(scope="session")
    def unlearnbench_store(tmp_path_factory: Any) -> Any:
        """One artifact store for the session, so each original, Retrain and pool member trains once."""
        from .store import Store

        return Store(tmp_path_factory.mktemp("unlearnbench-store"))

    @pytest.fixture
    def unlearnbench_host() -> Any:
        """A fresh plugin host with the installed entry points (pluggy's ``pm`` fixture pattern)."""
        from .plugins import PluginHost

        h = PluginHost()
        h.load_entry_points()
        return h

    @pytest.fixture(name="check_method")
    def _check_method_fixture(unlearnbench_store: Any, tmp_path: Path) -> Any:
        """``check_method(name, **options)`` with models in the session's store and run records in
        the test's ``tmp_path``; the options are ``check_method``'s own."""

        def check(name: str, workdir: str | Path | None = None, **options: Any) -> dict:
            options.setdefault("store", unlearnbench_store)
            return check_method(name, tmp_path if workdir is None else workdir, **options)

        return check
