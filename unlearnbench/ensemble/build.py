"""Build the ensembles of PROTOCOL §8.7.0 for recorded methods and score them (issue 18 acceptance 2;
``unlearnbench ensemble``, ``-o eval.ensembles=on``).

For one scenario's trial-0 forget set:

- O (originals, KLOM), R (oracles on D_r) and R′ (independent oracles, the Retrain (independent) row);
  O_0 and R_0 are the trial's own original and Retrain, reused from the store (``members``);
- U_A per method, replaying its trial-0 record's recipe (``replay``): KLOM's run i from O_i with run seed
  i, the challenge's N runs from O_0 with run seeds r (the two share run (O_0, 0));
- the U-LiRA split design: K half-size originals θ_k and K·M runs of each method (§8.7.3).

Every member is one executor job (``-o executor=processes|ray`` parallelises them), keyed by what defines
it; members already in the store are never sent again, and each is written as it arrives, so an
interrupted build loses nothing it finished. A member stores its per-example outputs only (and, for O_i
and θ_k, which runs start from, its weights). Each ensemble is a store JSON document listing its
members' keys (kind ``ensemble``), so a result names the exact models it came from by that manifest's key.

Scores are ``ensemble.evaluate`` over those manifests, written as ``<runs>/<scenario>/<run>/ensemble.json``
per method and ``<runs>/<scenario>/ensemble.json`` for the No unlearning and Retrain (independent) rows;
every value states its N (or K×M), its resolution (ε_max, the KLOM floor) and the manifest keys.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError, StoreError
from . import members, outputs

if TYPE_CHECKING:
    from ..config import Resolved
    from ..scenario import Task
    from ..store import Store

RESULT_SCHEMA = 1
ENSEMBLE_KIND = "ensemble"  # store JSON: one ensemble's manifest (its members' keys)
RESULT_FILE = "ensemble.json"
METRICS = ("klom", "challenge", "ulira")


@dataclass(frozen=True)
class Sizes:
    """Ensemble sizes (PROTOCOL §8.7.4). 0 leaves a metric out."""

    challenge: int  # N runs from O_0 and N oracles [NE --num_models]
    klom: int  # N originals, N runs (one from each), N oracles (R's first N)
    lira_k: int  # halves
    lira_m: int  # forget sets per half
    variance: str = "per_example"  # U-LiRA's σ (§8.7.3): per_example, or fixed with few shadow models
    # ulira_measure_retrain (§8.7.3): train U-LiRA's K·M retrains on H_k ∖ D_f^{k,m} and measure the Retrain
    # row, instead of stating its expectation (AUC 0.5, TPR@1%FPR 1%)
    lira_retrain: bool = False

    @property
    def oracles(self) -> int:
        return max(self.challenge, self.klom)

    def check(self) -> "Sizes":
        if self.challenge and self.challenge < 3:
            raise ConfigError(f"challenge N={self.challenge}: the challenge metric needs N ≥ 3 (ε_max = ⌈ln(N − 1)⌉)")
        if self.klom and self.klom < 2:
            raise ConfigError(f"KLOM N={self.klom}: KLOM needs at least 2 models per ensemble")
        if bool(self.lira_k) != bool(self.lira_m) or (self.lira_k and self.lira_k < 2):
            raise ConfigError(f"U-LiRA K={self.lira_k}, M={self.lira_m}: K ≥ 2 halves (each target is scored on "
                              "the others, §8.7.3) and M ≥ 1, or both 0 to leave U-LiRA out")
        if min(self.challenge, self.klom, self.lira_k, self.lira_m) < 0:
            raise ConfigError("ensemble sizes are counts ≥ 0")
        if self.lira_retrain and not self.lira_k:
            raise ConfigError("measuring U-LiRA's Retrain row needs U-LiRA on (K ≥ 2, M ≥ 1)")
        if self.variance not in ("per_example", "fixed"):
            raise ConfigError(f"variance={self.variance}: per_example or fixed")
        return self


# PROTOCOL §8.7.4: "faithful" is the references' own sizes ([NE] 512, [KL26] 100, [DU] 64 × 10), the digits
# default; "smoke" the CI configuration; "minimal" the cheapest faithful one (fmnist's: ε_max 5, the toy
# KLOM floor P95 ≈ 1.2, IN ≈ 8 and OUT ≈ 80 per example with a fixed σ).
PRESETS = {
    "faithful": Sizes(challenge=512, klom=100, lira_k=64, lira_m=10),
    "smoke": Sizes(challenge=64, klom=64, lira_k=16, lira_m=10),
    "minimal": Sizes(challenge=64, klom=64, lira_k=32, lira_m=5, variance="fixed"),
}


def sizes_for(scenario: Any, preset: str = "auto", **over: int | str | None) -> Sizes:
    """The sizes of ``preset`` (auto: the scenario's ``ensemble_preset``, §8.7.4's per-scenario defaults),
    with any of ``over`` (challenge, klom, lira_k, lira_m, variance, lira_retrain) replacing its value."""
    name = getattr(scenario, "ensemble_preset", "faithful") if preset == "auto" else preset
    if name not in PRESETS:
        from ..errors import unknown

        raise unknown("ensemble preset", name, PRESETS)
    return replace(PRESETS[name], **{k: v for k, v in over.items() if v is not None}).check()


# -- the task a job rebuilds in its worker ------------------------------------------------------------------
_TASKS: dict = {}  # per process: (config hash, scenario config, trial, data root) -> Task


class TaskRef:
    """The trial's task as a job carries it: itself in this process; to a worker, only how to build it (the
    resolved config, trial, data root) and its recipe, so a payload never holds the data set. The worker
    builds it once per process and checks its manifest hash, so both sides hold the same splits."""

    def __init__(self, task: "Task", res: "Resolved", data_root: str | None):
        self.task, self.res, self.data_root = task, res, data_root
        self.manifest_hash, self.recipe, self.trial = task.manifest_hash, task.recipe, task.trial

    def __reduce__(self):
        return _task_from, (self.res, self.trial, self.data_root, self.recipe, self.manifest_hash)

    def get(self) -> "Task":
        return self.task


def _task_from(res: "Resolved", trial: int, data_root: str | None, recipe: Any, manifest_hash: str) -> TaskRef:
    import dataclasses

    from ..runner import build_task

    key = (res.hash, json.dumps(res.to_dict()["scenario"], sort_keys=True), trial, data_root, manifest_hash)
    if key not in _TASKS:
        task = build_task(res, trial, data_root)
        if task.manifest_hash != manifest_hash:
            raise StoreError(f"the worker built manifest {task.manifest_hash[:12]}, the driver {manifest_hash[:12]}: "
                             "another data set or code version")
        _TASKS[key] = task
    ref = TaskRef.__new__(TaskRef)
    ref.task = dataclasses.replace(_TASKS[key], recipe=recipe)  # the driver's recipe, exactly
    ref.res, ref.data_root, ref.manifest_hash, ref.recipe, ref.trial = res, data_root, manifest_hash, recipe, trial
    return ref


def _model_job(ref: TaskRef, rows, init_seed: int, order_seed: int, keep: bool, device: str, desc: str) -> dict:
    return members.train_model_member(ref.get(), rows, init_seed, order_seed, keep, device, desc)


def _run_job(ref: TaskRef, runs: list, theta0: dict, original_key: str, run: Any, device: str,
             splits: dict | None) -> dict:
    return members.run_members(ref.get(), runs, theta0, original_key, run, device, splits)


# -- the plan -------------------------------------------------------------------------------------------------
@dataclass
class Subject:
    """One method to build ensembles for: its trial-0 record, resolved config and frozen recipe."""

    name: str  # its run folder (method name, or name@variant)
    record: dict
    res: "Resolved"
    replay: Any  # ensemble.replay.Replay
    path: str = ""


class Builder:
    """Plans every member of the requested ensembles, sends the missing ones to the executor, writes them,
    and writes each ensemble's manifest."""

    def __init__(self, stages, res: "Resolved", sizes: Sizes, executor, data_root: str | None,
                 device: str = "cpu", echo: Callable[[str], None] = lambda s: None):
        self.stages, self.task, self.store = stages, stages.task, stages.store
        self.sizes, self.executor, self.device, self.echo = sizes, executor, device, echo
        self.ref = TaskRef(self.task, res, data_root)
        self.mh = self.task.manifest_hash
        self.trained: dict[str, int] = {}  # member kind -> members trained now
        self.failed: list[str] = []
        self._loaded: dict[str, dict] = {}

    # -- specs and keys ---------------------------------------------------------------------------------
    def _base(self, **kw) -> dict:
        t = self.task
        return {"kind": members.MEMBER_KIND, "version": members.ENSEMBLE_VERSION, "outputs": outputs.OUTPUTS_VERSION,
                "scenario": t.scenario, "trial": t.trial, "manifest": self.mh, "arch": t.arch,
                "num_classes": t.num_classes, **kw}

    def _model_spec(self, role: str, i: int, rows_id: str, rows) -> dict:
        from ..seeding import sha256_hex

        init, order = members.model_seeds(self.task.trial, role, i)
        return self._base(role=role, id=i, recipe=self.task.recipe.spec(), data=rows_id,
                          rows=sha256_hex([int(r) for r in rows]), init_seed=init, order_seed=order)

    def _run_spec(self, s: Subject, original: str, run: Any, forget: str | None = None) -> dict:
        return self._base(role="run", method=s.res.method.name, config=s.res.hash, replay=s.replay.spec(),
                          original=original, run=run, **({"lira_forget": forget} if forget else {}))

    def _done(self, key: str, keep: bool) -> bool:
        return self.store.has(outputs.KIND, key) and (not keep or self.store.has(members.MODEL_KIND, key))

    # -- the reference ensembles ------------------------------------------------------------------------
    def reference(self) -> dict:
        """O, R, R′ and the LiRA halves: planned, the missing members trained; their manifests."""
        st, t = self.stages, self.task
        st.train_shared()
        o0, why = st.outputs_of("original")
        r0, why_r = st.outputs_of("retrain")
        if o0 is None or r0 is None:
            raise StoreError(f"the trial's original or Retrain has no cached outputs: {why or why_r}")
        outputs.store_labels(self.store, t)
        n_o = max(self.sizes.klom, 1)
        jobs: list[tuple[str, dict, tuple, bool]] = []  # (key, spec, job args, keep weights)

        def model(role: str, i: int, split: str, rows, keep: bool) -> str:
            spec = self._model_spec(role, i, split, rows)
            key = self.store.key(spec)
            if not self._done(key, keep):
                jobs.append((key, spec, (self.ref, rows, spec["init_seed"], spec["order_seed"], keep, self.device,
                                         f"{role} {i}"), keep))
            return key

        train, retain = t.indices("train"), t.indices("retain")
        orig = [o0] + [model("original", i, "train", train, True) for i in range(1, n_o)]
        oracle = [r0] + [model("oracle", i, "retain", retain, False) for i in range(1, self.sizes.oracles)]
        indep = [model("independent", i, "retain", retain, False) for i in range(self.sizes.oracles)]
        lira = None
        if self.sizes.lira_k:
            import numpy as np

            halves, forgets = members.lira_splits(np.asarray(train), t.data.y.numpy(), t.trial, self.sizes.lira_k,
                                                  self.sizes.lira_m, t.manifest.get("forget_class"))
            thetas = [model("lira", k, f"lira-half-{k}", h, True) for k, h in enumerate(halves)]
            lira = {"K": self.sizes.lira_k, "M": self.sizes.lira_m, "halves": [h.tolist() for h in halves],
                    "forget": [[f.tolist() for f in fs] for fs in forgets], "originals": thetas}
            # Retrain as method A: a model from scratch on H_k ∖ D_f^{k,m}. Trained when asked; also used when
            # an earlier call stored them all, so a later call without the flag keeps the measured row
            retrains = [[("lira-retrain", (k, j), f"lira-retain-{k}-{j}", np.setdiff1d(h, f))
                         for j, f in enumerate(forgets[k])] for k, h in enumerate(halves)]
            if self.sizes.lira_retrain or all(self._done(self.store.key(self._model_spec(*a)), False)
                                              for row in retrains for a in row):
                lira["retrains"] = [[model(*a, False) for a in row] for row in retrains]
        self._send_models(jobs)
        man = {"originals": self._manifest("originals", orig, o0_weights=st.keys["original"]),
               "oracles": self._manifest("oracles", oracle, r0_weights=st.keys["retrain"]),
               "independent": self._manifest("independent", indep)}
        if lira is not None:
            man["lira"] = self._put(lira | {"role": "lira", "manifest": self.mh})
        self.members = {"originals": orig, "oracles": oracle, "independent": indep, "lira": lira}
        return man

    def _manifest(self, role: str, keys: list[str], **extra) -> str:
        return self._put({"role": role, "manifest": self.mh, "members": keys, "n": len(keys), **extra})

    def _put(self, doc: dict) -> str:
        key = self.store.key(doc)
        if self.store.get_json(ENSEMBLE_KIND, key) is None:
            self.store.put_json(ENSEMBLE_KIND, key, doc)
        return key

    def _send(self, jobs: list, desc: str, write: Callable[[Any], None]) -> None:
        from ..executor import failures

        if not jobs:
            return
        outcomes = self.executor.run(jobs, desc=desc, on_done=write, unit="model")
        for o in failures(outcomes):
            self.failed.append(f"{o.job.label}: {o.error}")

    def _send_models(self, planned: list) -> None:
        from ..executor import Job

        specs = {key: (spec, keep) for key, spec, _, keep in planned}
        jobs = [Job(key, _model_job, args, label=args[-1]) for key, _, args, _ in planned]

        def write(o):
            if not o.ok:
                return
            spec, keep = specs[o.job.key]
            if keep:  # weights first: a member is done once its outputs are there too
                self.store.put_new(members.MODEL_KIND, o.job.key, o.value["state"], spec, self.mh)
            self.store.put_new(outputs.KIND, o.job.key, o.value["outputs"], spec, self.mh)
            self.store.put_json(members.MEMBER_KIND, o.job.key, {"weights_digest": o.value["digest"]})
            self.trained[spec["role"]] = self.trained.get(spec["role"], 0) + 1

        self._send(jobs, f"ensemble models ({self.task.scenario}, {self.executor.name})", write)
        self._check()

    def _check(self) -> None:
        if self.failed:
            raise StoreError(f"{len(self.failed)} ensemble member(s) failed twice (the others are stored; run the "
                             "command again to resume): " + "; ".join(self.failed))

    def _weights(self, key: str) -> dict:
        if key not in self._loaded:  # one copy per original, however many runs start from it
            self._loaded[key] = (self.stages.original() if key == self.members["originals"][0]
                                 else self.store.get(members.MODEL_KIND, key, self.mh)[0])
        return self._loaded[key]

    # -- the runs of the methods ------------------------------------------------------------------------
    def runs(self, subjects: list[Subject]) -> dict[str, dict]:
        """Every run member of ``subjects``; per subject the manifests of its run ensembles."""
        from ..executor import Job

        m = self.members
        okey0 = self.stages.keys["original"]
        # (original member key, the key θ_0 is known by in pool specs, run id, LiRA (k, m) or None)
        starts: list[tuple[str, str, Any, tuple | None]] = []
        if self.sizes.klom:
            starts += [(m["originals"][i], okey0 if i == 0 else m["originals"][i], i, None) for i in range(self.sizes.klom)]
        if self.sizes.challenge:
            starts += [(m["originals"][0], okey0, r, None) for r in range(1 if self.sizes.klom else 0, self.sizes.challenge)]
        if m["lira"] is not None:
            for k, theta in enumerate(m["lira"]["originals"]):
                starts += [(theta, theta, ["lira", k, j], (k, j)) for j in range(self.sizes.lira_m)]
        keys: dict[tuple, str] = {}  # (subject, original, run as JSON) -> member key
        planned: list[tuple[str, Any, list]] = []  # (group label, job args, [(subject, key, spec)])
        from ..seeding import canonical_json, sha256_hex

        for orig, okey, run, kj in starts:
            forget = None
            splits = None
            if kj is not None:
                k, j = kj
                h, f = m["lira"]["halves"][k], m["lira"]["forget"][k][j]
                forget = sha256_hex(f)
                splits = {"train": h, "forget": f, "retain": sorted(set(h) - set(f))}
            groups: dict[str, list] = {}
            for s in subjects:
                spec = self._run_spec(s, orig, run, forget)
                key = self.store.key(spec)
                keys[(s.name, orig, canonical_json(run))] = key
                if self._done(key, False):
                    continue
                # one fresh pool per run serves every merge method with the same pool section (§8.7.0)
                g = canonical_json(s.res.to_dict()["pool"]) if s.res.method.uses_pool else f"own:{s.name}"
                groups.setdefault(g, []).append((s, key, spec))
            for group in groups.values():
                planned.append((orig, okey, run, splits, group))
        by_key = {}
        jobs = []
        for i, (orig, okey, run, splits, group) in enumerate(planned):
            label = f"{'+'.join(s.name for s, _, _ in group)} run {run}"
            runs = [(s.name, s.res, s.replay) for s, _, _ in group]
            jobs.append(Job(f"runs-{i}", _run_job, (self.ref, runs, self._weights(orig), okey, run, self.device, splits),
                            label=label))
            by_key[f"runs-{i}"] = group

        def write(o):
            if not o.ok:
                return
            for s, key, spec in by_key[o.job.key]:
                got = o.value[s.name]
                self.store.put_new(outputs.KIND, key, got["outputs"], spec, self.mh)
                self.store.put_json(members.MEMBER_KIND, key, {"weights_digest": got["digest"]})
                self.trained["run"] = self.trained.get("run", 0) + 1

        self._send(jobs, f"ensemble runs ({self.task.scenario}, {self.executor.name})", write)
        self._check()
        out: dict[str, dict] = {}
        for s in subjects:
            def k(orig: str, run: Any) -> str:
                return keys[(s.name, orig, canonical_json(run))]

            man: dict[str, Any] = {}
            if self.sizes.klom:
                man["klom_runs"] = self._manifest("klom-runs", [k(m["originals"][i], i) for i in range(self.sizes.klom)],
                                                  method=s.name, config=s.res.hash)
            if self.sizes.challenge:
                man["challenge_runs"] = self._manifest("challenge-runs", [k(m["originals"][0], r)
                                                                         for r in range(self.sizes.challenge)],
                                                       method=s.name, config=s.res.hash)
            if m["lira"] is not None:
                man["lira_runs"] = self._manifest("lira-runs", [[k(theta, ["lira", kk, j]) for j in range(self.sizes.lira_m)]
                                                                for kk, theta in enumerate(m["lira"]["originals"])],
                                                  method=s.name, config=s.res.hash)
            first = k(m["originals"][0], 0) if (self.sizes.klom or self.sizes.challenge) else None
            man["run0_weights_digest"] = (self.store.get_json(members.MEMBER_KIND, first) or {}).get("weights_digest") \
                if first else None
            out[s.name] = man
        return out


# -- scoring --------------------------------------------------------------------------------------------------
def _lira_spec(lira: dict, runs: list[list[str]]) -> dict:
    return {"halves": lira["halves"],
            "runs": [{"half": k, "forget": lira["forget"][k][j], "outputs": runs[k][j]}
                     for k in range(len(runs)) for j in range(len(runs[k]))]}


def score(store: "Store", mh: str, man: dict, sizes: Sizes, rows: dict[str, dict], options: dict) -> dict:
    """The three metrics of each row (``rows``: name -> its run manifests' keys, or "No unlearning") and of
    Retrain (independent), each with N (or K×M), ε_max or the floor, and the manifest keys it read."""
    from .evaluate import evaluate

    def members_of(key: str) -> list:
        return store.get_json(ENSEMBLE_KIND, key)["members"]

    orig, oracle, indep = (members_of(man[r]) for r in ("originals", "oracles", "independent"))
    lira = store.get_json(ENSEMBLE_KIND, man["lira"]) if "lira" in man else None
    opts = {**options, "variance": sizes.variance}
    out: dict[str, dict] = {name: {} for name in [*rows, "Retrain (independent)"]}

    def runs_of(name: str, which: str) -> str:  # the manifest key of the ensemble a row's value comes from
        if name == "Retrain (independent)":
            return man["independent"]
        return man["originals" if which != "lira_runs" else "lira"] if rows[name] is None else rows[name][which]

    for metric, n, which in (("klom", sizes.klom, "klom_runs"), ("challenge", sizes.challenge, "challenge_runs")):
        if not n:
            continue
        # No unlearning: KLOM's O ensemble itself; the challenge's N copies of O_0 (FQ = 0 by construction)
        none = orig[:n] if metric == "klom" else [orig[0]] * n
        spec = {"manifest": mh, "oracle": oracle[:n],  # R′ as a row of this metric only (not "independent")
                "rows": {**{name: {metric: none if r is None else members_of(r[which])} for name, r in rows.items()},
                         "Retrain (independent)": {metric: indep[:n]}}}
        got = evaluate(store, spec, options=opts)["rows"]
        ref = got["Retrain (independent)"][metric]
        # the resolution every value carries: KLOM's floor (R′ vs R, per split), the challenge's ε_max and
        # its ceiling (FQ of R′ vs R), PROTOCOL §8.7.1-2
        res = ({"floor": {s: v["p95"] for s, v in ref["splits"].items()}} if metric == "klom"
               else {"ceiling": ref["fq"]})
        for name, r in got.items():
            out[name][metric] = {**r[metric], "N": n, **res,
                                 "ensembles": {"runs": runs_of(name, which), "oracles": man["oracles"]}}
    if lira is not None:
        K, M = lira["K"], lira["M"]
        spec = {"manifest": mh, "lira": {
            name: _lira_spec(lira, [[lira["originals"][k]] * M for k in range(K)] if r is None
                             else members_of(r["lira_runs"])) for name, r in rows.items()}}
        got = evaluate(store, spec, options=opts)["rows"]
        for name, r in got.items():
            out[name]["ulira"] = {**r["ulira"], "K": K, "M": M, "floor": "AUC 0.5, TPR@1%FPR 0.01 (expected)",
                                  "ensembles": {"splits": man["lira"], "runs": runs_of(name, "lira_runs")}}
        if lira.get("retrains"):  # ulira_measure_retrain: the K·M retrains scored as any method's runs
            got = evaluate(store, {"manifest": mh, "lira": {"Retrain": _lira_spec(lira, lira["retrains"])}},
                           options=opts)["rows"]["Retrain"]["ulira"]
            out["Retrain (independent)"]["ulira"] = {**got, "K": K, "M": M, "measured": True,
                                                     "floor": "AUC 0.5, TPR@1%FPR 0.01 (expected)",
                                                     "ensembles": {"splits": man["lira"], "runs": man["lira"]}}
        else:
            # Retrain: IN and OUT are both "never trained on x" models, so AUC = 0.5 and TPR@1%FPR = 1% in
            # expectation without training them (§8.7.3)
            out["Retrain (independent)"]["ulira"] = {"auc": 0.5, "auc_dev": 0.0, "tpr_at_0.01_fpr": 0.01, "K": K,
                                                     "M": M, "expected": True, "floor": "by construction (§8.7.3)"}
    return out


def write_json(path: Path, doc: dict) -> Path:
    from ..data import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(doc, indent=1, default=float, allow_nan=True) + "\n")
    return path


# -- the whole command -----------------------------------------------------------------------------------------
def trial0_record(runs_dir: Path, scenario: str, name: str) -> tuple[Path, dict]:
    from ..report.records import read_record

    p = Path(runs_dir) / scenario / name / "seed-0" / "run.json"
    if not p.exists():
        raise ConfigError(f"no trial-0 record of {name!r} on {scenario} ({p}): an ensemble replays the trial-0 "
                          f"record's recipe (PROTOCOL §8.7.0); run it first: unlearnbench run -m {name.split('@')[0]} "
                          f"-s {scenario} --seeds 0 --runs-dir {runs_dir}")
    return p, read_record(p)


def subject(host, path: Path, record: dict, overrides: list[str]) -> Subject:
    """A record's method, resolved to the record's own config (its hash checked) with ``overrides`` of how it
    runs (executor, threads), and its frozen recipe."""
    from ..config import resolve
    from .replay import from_record

    res = resolve(host, file_layer=record["config"], overrides=overrides, protocol=record.get("protocol", 1))
    if res.hash != record.get("config_hash"):
        raise ConfigError(f"{path}: its config resolves to hash {res.hash[:12]}, the record says "
                          f"{str(record.get('config_hash'))[:12]}: give only options of how it runs (executor.*, "
                          "threads), or rerun the record with this code")
    if res.method.oracle:
        raise ConfigError(f"{res.method.name!r} is the oracle: its row is Retrain (independent), built with every "
                          "ensemble; leave it out of --methods")
    return Subject(name=path.parent.parent.name, record=record, res=res,
                   replay=from_record(record, res.method, str(path)), path=str(path))


def build_and_score(host, scenario: str, names: list[str], *, store: "Store", runs_dir: Path,
                    data_root: str | None = None, sizes: Sizes | None = None, preset: str = "auto",
                    overrides: list[str] = (), options: dict | None = None,
                    echo: Callable[[str], None] = print) -> dict:
    """``unlearnbench ensemble``: build what ``sizes`` needs for the trial-0 records of ``names`` on
    ``scenario`` in ``runs_dir``, score them, write the results; returns {name: result}."""
    import torch

    from ..executor import executor_for
    from ..provenance import provenance
    from ..runner import build_task, pick_threads
    from ..stages import Stages
    from .evaluate import OPTIONS

    subjects = [subject(host, *trial0_record(runs_dir, scenario, n), list(overrides)) for n in names]
    base = subjects[0].res if subjects else None
    if base is None:  # the reference rows alone: the scenario's defaults, any method
        from ..config import resolve

        base = resolve(host, scenario=scenario, method="retrain", overrides=list(overrides))
    sizes = sizes or sizes_for(base.scenario, preset)
    task = build_task(base, 0, data_root)
    if task.original_source != "train" or task.pretrained is not None or not task.scoring.has_oracle:
        raise ConfigError(f"{scenario}: the §8.7 ensembles need originals trained from scratch and a Retrain oracle "
                          "(PROTOCOL §8.7.0); this scenario has a pretrained original or no oracle")
    for s in subjects:
        if s.record.get("manifest_hash") != task.manifest_hash:
            raise ConfigError(f"{s.path} is of manifest {str(s.record.get('manifest_hash'))[:12]}, this code builds "
                              f"{task.manifest_hash[:12]}: another data set or split code")
    device = str(base.cfg.device)
    threads = pick_threads(int(base.cfg.threads), task.threads)
    torch.set_num_threads(threads)
    executor = executor_for(base.cfg.executor, device)
    stages = Stages(task, store, device, executor=executor)
    b = Builder(stages, base, sizes, executor, data_root, device, echo)
    man = b.reference()
    runs = b.runs(subjects)
    opts = {**{k: v[0] for k, v in OPTIONS.items()}, **(options or {})}
    rows: dict[str, Any] = {"No unlearning": None, **runs}
    scores = score(store, task.manifest_hash, man, sizes, rows, opts)
    prov = provenance(device, threads)
    common = {"schema": RESULT_SCHEMA, "scenario": scenario, "trial": 0, "manifest_hash": task.manifest_hash,
              "sizes": asdict(sizes), "options": opts, "ensembles": man, "provenance": {**prov,
                                                                                      "executor": executor.describe()}}
    write_json(Path(runs_dir) / scenario / RESULT_FILE,
               {**common, "rows": {k: scores[k] for k in ("No unlearning", "Retrain (independent)")}})
    out = {}
    for s in subjects:
        digest = runs[s.name].pop("run0_weights_digest")
        rec_digest = (s.record.get("weights_digest") or {}).get("unlearned")
        doc = {**common, "method": s.res.method.name, "run": s.name, "config_hash": s.res.hash,
               "record": _relative(s.path, runs_dir),
               "replay": s.replay.spec(), "ensembles": {**man, **runs[s.name]},
               # run 0 from O_0 is the trial's own run (every seed as the trial's): a faithful replay gives the
               # record's weights, on the thread count the record ran with (PROTOCOL §10.1)
               "replay_check": {"run0_weights_digest": digest, "record_weights_digest": rec_digest,
                                "same": None if digest is None or rec_digest is None else digest == rec_digest},
               "metrics": scores[s.name]}
        write_json(Path(runs_dir) / scenario / s.name / RESULT_FILE, doc)
        out[s.name] = doc
    echo(f"ensembles of {scenario}: trained now {b.trained or 'nothing (all stored)'}; results in "
         f"{Path(runs_dir) / scenario}/*/{RESULT_FILE}")
    return out


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


def summary_lines(results: dict) -> list[str]:
    """One line per method: its scores with N (or K×M) and resolution (the CLI's table)."""
    def f(v, d=3):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"

    lines = []
    for name, doc in results.items():
        m = doc["metrics"]
        parts = [name]
        if "klom" in m:
            k = m["klom"]
            parts.append("KLOM P95 " + " ".join(f"{s} {f(v['p95'], 2)} (floor {f(k['floor'][s], 2)})"
                                                for s, v in k["splits"].items()) + f" N={k['N']}")
        if "challenge" in m:
            c = m["challenge"]
            parts.append(f"FQ {f(c['fq'])} (ceiling {f(c['ceiling'])}) score {f(c.get('score'))} "
                         f"N={c['N']} ε_max={c['epsilon_max']}")
        if "ulira" in m:
            u = m["ulira"]
            parts.append(f"U-LiRA AUC {f(u['auc'])} TPR@1%FPR {f(u['tpr_at_0.01_fpr'])} K×M={u['K']}×{u['M']}")
        lines.append("  ".join(parts))
    return lines
