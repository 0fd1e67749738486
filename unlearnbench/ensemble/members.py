"""The members of the ensembles of PROTOCOL §8.7.0, each one executor job that returns its per-example
outputs (``outputs.compute``): the originals O_i, the oracles R_i and R′_i, the LiRA half-size originals
θ_k, and the runs of a method (from O_i, from θ_k). Module-level functions, so a ``processes`` or ``ray``
worker runs exactly what ``local`` runs; a worker never sees the store (``unlearnbench.executor``).

Seeds, from the streams §8.7.0 names and no other convention:

- O_i, R_i, R′_i (i ≥ 1): θ_init and data order from the ``ensemble`` stream keyed by (role, i), so the
  three roles' member ids are disjoint; O_0 and R_0 are the trial's own original and Retrain (their
  ``init`` / ``order`` seeds), reused from the store. R′ has no member 0 of the trial: all of it is new.
- θ_k (LiRA): the halves, the forget sets and θ_k's init and order from the ``lira`` stream (§8.7.3).
- runs: run r of method A from an original is ``Ctx(run=r)``: r = 0 is the trial's own seeds, r ≠ 0 the
  ``unlearn`` stream keyed by ("run", r) (``Ctx.stream``); a merge's pool is fresh per run, seeded
  (pool, r, config) (``Stages.run``). LiRA's runs are r = ("lira", k, m).
"""
from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from ..seeding import numpy_rng, stream_seed
from ..store import tensor_digest

if TYPE_CHECKING:
    import numpy as np

    from ..config import Resolved
    from ..scenario import Task

MEMBER_KIND = "ensemble-member"  # the spec kind of a member (its outputs live under outputs.KIND)
MODEL_KIND = "ensemble-model"  # weights of the members other jobs start from (O_i, θ_k); nothing else keeps weights
ENSEMBLE_VERSION = 1  # bump when a member's meaning changes: stored members are then not found
LIRA_FORGET_RATIO = 0.1  # ρ: |D_f^{k,m}| = ρ|H_k| [DU] --forget_ratio 0.1 (§8.7.3)


def model_seeds(trial: int, role: str, i) -> tuple[int, int]:
    """(θ_init seed, data-order seed) of member i ≥ 1 of O ("original"), R ("oracle") or R′ ("independent"),
    of LiRA half k ("lira"), or of the retrain (k, m) of U-LiRA's measured Retrain row ("lira-retrain")."""
    if role == "lira":
        return stream_seed(trial, "lira", "original", i, "init"), stream_seed(trial, "lira", "original", i, "order")
    if role == "lira-retrain":  # i = (k, m): the Retrain of half k without its forget set m (§8.7.3)
        k, m = i
        return stream_seed(trial, "lira", "retrain", k, m, "init"), stream_seed(trial, "lira", "retrain", k, m, "order")
    return stream_seed(trial, "ensemble", role, i, "init"), stream_seed(trial, "ensemble", role, i, "order")


def lira_splits(train: "np.ndarray", labels: "np.ndarray", trial: int, K: int, M: int,
                forget_class: int | None) -> tuple[list["np.ndarray"], list[list["np.ndarray"]]]:
    """K halves H_k of D_pool = D_train, each a uniformly random half, and M forget sets per half: a random
    ρ|H_k| subset, or (class-wise, [OURS]) H_k ∩ class c for every m (§8.7.3); all from the ``lira`` stream."""
    import numpy as np

    train = np.asarray(train, dtype=np.int64)
    halves, forgets = [], []
    for k in range(K):
        h = np.sort(numpy_rng(trial, "lira", "half", k).choice(train, size=len(train) // 2, replace=False))
        halves.append(h)
        if forget_class is not None:
            f = h[np.asarray(labels)[h] == forget_class]
            forgets.append([f for _ in range(M)])
        else:
            n = int(LIRA_FORGET_RATIO * len(h))
            forgets.append([np.sort(numpy_rng(trial, "lira", "forget", k, m).choice(h, size=n, replace=False))
                            for m in range(M)])
    return halves, forgets


def with_splits(task: "Task", **splits: Any) -> "Task":
    """``task`` with some splits replaced (LiRA's H_k as train, D_f^{k,m} as forget, H_k ∖ D_f^{k,m} as
    retain): its own manifest hash, the same data."""
    import dataclasses

    from ..scenario import manifest_digest

    man = {**task.manifest, "splits": {**task.manifest["splits"], **{k: [int(i) for i in v] for k, v in splits.items()}},
           "ensemble_splits": sorted(splits)}
    man["sizes"] = {k: len(v) for k, v in man["splits"].items()}
    return dataclasses.replace(task, manifest=man, manifest_hash=manifest_digest(man))


def _outputs(task: "Task", model, device: str, what: str) -> dict:
    from . import outputs

    got = outputs.compute(task, model.to(device), device)
    if got is None:
        raise StoreError(f"{what}: the model's logits are not all finite (it diverged); it has no φ to store")
    return got


def train_model_member(task: "Task", rows: "np.ndarray", init_seed: int, order_seed: int, keep: bool,
                       device: str, desc: str) -> dict:
    """One model trained from scratch with the scenario's recipe (§2.1) on the data indices ``rows`` (D_train,
    D_r, or a LiRA half): θ_init drawn as ``Stages.init_weights`` draws it, under ``init_seed``. Returns its
    outputs on every example of ``task``'s manifest, its weights' digest, and the weights where ``keep``
    (other members start from it)."""
    import torch

    from ..training import train

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = task.new_model()
    idx = torch.as_tensor(rows, dtype=torch.long)
    g = torch.Generator()
    g.manual_seed(order_seed)
    train(model, task.data.x[idx], task.data.y[idx], task.recipe, g, device=device, desc=desc,
          augment=task.augment_for(task.recipe), show_progress=False)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"outputs": _outputs(task, model, device, desc), "digest": tensor_digest(state),
            "state": state if keep else None}


class _RunStages:
    """What a replayed run's ``Ctx`` reads: ``Stages`` over a throwaway store (the run's own fresh pool lives
    there and dies with the job: a member keeps only its outputs), with θ_0 the given original."""

    @staticmethod
    def make(task: "Task", store, device: str, theta0: dict, original_key: str, run: Any):
        from ..stages import Stages

        class RunStages(Stages):
            def original(self) -> dict:
                return theta0

            def retrain(self) -> dict:
                from ..errors import ConfigError

                raise ConfigError("an ensemble run reads no Retrain model (its recipe is replayed, not selected)")

        stages = RunStages(task, store, device)
        stages.keys["original"] = original_key
        stages.digests["original"] = tensor_digest(theta0)
        stages.run = run
        return stages


def run_members(task: "Task", runs: list[tuple[str, "Resolved", Any]], theta0: dict, original_key: str,
                run: Any, device: str, splits: dict | None = None) -> dict:
    """Run r of each (name, resolved config, ``Replay``) in ``runs`` from θ_0 = ``theta0``, each replaying its
    record's recipe, and return per name its outputs on every example of ``task``'s manifest and its weights'
    digest. The runs of one job share one fresh pool (§8.7.0: one pool per run serves every merge operator).
    ``splits``: the splits the methods see instead of the task's (LiRA: H_k, D_f^{k,m}, H_k ∖ D_f^{k,m});
    the outputs are still over ``task``'s manifest."""
    from ..context import Ctx
    from ..store import Store

    seen = with_splits(task, **splits) if splits else task
    out = {}
    with tempfile.TemporaryDirectory(prefix="unlearnbench-run-") as tmp:
        stages = _RunStages.make(seen, Store(tmp), device, theta0, original_key, run)
        for name, res, replay in runs:
            stages.pool_only = list(replay.pool_members) if replay.pool_members is not None else None
            ctx = Ctx(stages, res.method, res.cfg.method, res.rule, res.cfg.selection, res.cfg.pool, (),
                      run=run, replay=replay)
            result = res.method.unlearn(ctx)
            # as the trial's own record evaluated it (a linear pool's edit as f_lin, PROTOCOL §4.8)
            model = stages.model_of(result.state, bool(getattr(res.cfg.pool, "linear", False)), method=name)
            out[name] = {"outputs": _outputs(task, model, device, f"{name} run {run}"),
                         "digest": tensor_digest(result.state)}
    return out
