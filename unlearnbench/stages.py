"""The shared stages of a trial, each a content-addressed artifact computed once:
θ_init, the original model, the retrain oracle, every fine-tune pool member, and the
metrics of the original and retrain models. Every key includes the index manifest's hash,
and every load checks it (PROTOCOL §1.2)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator

from . import progress
from .errors import ConfigError
from .evaluate import Evaluator
from .seeding import stream_seed, torch_gen
from .stacked import stackable
from .store import tensor_digest

if TYPE_CHECKING:

    from .recipe import Recipe
    from .scenario import Task
    from .store import Store

# Bump when a change to training or evaluation code makes stored artifacts stale.
ARTIFACT_VERSION = 1


def train_member(task: "Task", theta0: dict, recipe, seed: int, keep: list[str], device: str, desc: str,
                 linear: bool = False) -> dict:
    """One pool member: θ_0 fine-tuned on D_f with ``recipe`` (BN in train mode, §3), its parameters;
    ``linear``: fine-tuned as θ_0's linearised model f_lin, BN frozen at θ_0 (§4.8, unlearnbench.tangent).
    Module-level, so an executor's worker runs exactly this with a task detached to D_f."""
    import torch

    from .training import train

    model = task.new_model()
    model.load_state_dict(theta0)
    net = model
    if linear:
        from .tangent import Linearized

        net = Linearized(model, theta0)  # the one training loop, on f_lin; θ is model's parameters
    g = torch.Generator()
    g.manual_seed(seed)
    fx, fy = task.tensors("forget")
    train(net, fx, fy, recipe, g, device=device, desc=desc, augment=task.augment_for(recipe), show_progress=False,
          amp=task.amp)
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k in keep}


def train_members(task: "Task", theta0: dict, recipes: list, seeds: list[int], keep: list[str], device: str,
                  desc: str) -> list[dict]:
    """Several pool members at once, as one stacked model (``stacked.train_many``; ``executor.stack``):
    each ``train_member(task, theta0, recipes[i], seeds[i], ...)`` up to float reordering, each from its
    own generator. Module-level, for an executor's worker, as ``train_member``."""
    import torch

    from .stacked import train_many

    models = []
    for _ in recipes:
        model = task.new_model()
        model.load_state_dict(theta0)
        models.append(model)
    gens = [torch.Generator().manual_seed(seed) for seed in seeds]
    fx, fy = task.tensors("forget")
    train_many(models, fx, fy, list(recipes), gens, augments=[task.augment_for(r) for r in recipes], device=device,
               desc=desc, show_progress=False)
    return [{k: v.detach().cpu() for k, v in m.state_dict().items() if k in keep} for m in models]


def train_model(task: "Task", init: dict, split: str, kind: str, device: str) -> dict:
    """The original (on D_train) or the Retrain oracle (on D_r) from θ_init, with the task's recipe:
    original and Retrain start from the same θ_init, bit for bit. Module-level, for an executor."""
    from .training import train

    model = task.new_model()
    model.load_state_dict(init)
    x, y = task.tensors(split)
    recipe = task.recipe
    train(model, x, y, recipe, torch_gen(task.trial, "order", kind), device=device,
          desc=f"{kind} (trial {task.trial})", augment=task.augment_for(recipe), amp=task.amp)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


class Stages:
    def __init__(self, task: "Task", store: "Store", device: str = "cpu", executor=None):
        from .executor import LocalExecutor

        self.task = task
        self.store = store
        self.device = device
        self.executor = executor if executor is not None else LocalExecutor(device=device)
        self.evaluator = Evaluator(task, device)
        self.timings: dict[str, float] = {}
        self.keys: dict[str, str] = {"manifest": task.manifest_hash}
        self.digests: dict[str, str] = {}  # kind -> tensor_digest of the weights (what, not how)
        self.trained: list[str] = []  # what this process had to train (the rest came from the store)
        self._cache: dict[str, dict] = {}
        self._metrics: dict[str, dict] = {}
        self._reference: dict[str, float] = {}  # Retrain on metrics past the full evaluation (``reference``)
        self._reference_logits: dict = {}  # its logits per split, for those metrics (``Evaluator.measure``)
        self._eval_logits: dict[str, tuple] = {}  # kind -> (model, its logits per split), until outputs_of reads it
        # an ensemble run (PROTOCOL §8.7.0): run r ≠ 0 fine-tunes a fresh pool with seeds (pool, r, config);
        # ``pool_only``: the pool indices a replayed run streams (the member a single-best method chose)
        self.run: Any = 0
        self.pool_only: list[int] | None = None
        self._record_manifest()
        self.param_keys = self._param_keys()

    def _record_manifest(self) -> None:
        """Keep the index manifest beside the artifacts built on it; written only when absent or
        different, so a complete store can be shared read-only."""
        from .seeding import canonical_json

        held = self.store.get_json("manifest", self.task.manifest_hash)
        if held is None or canonical_json(held) != canonical_json(self.task.manifest):
            self.store.put_json("manifest", self.task.manifest_hash, self.task.manifest)

    def _param_keys(self) -> list[str]:
        from .taskvec import param_keys

        return param_keys(self.task.new_model())

    def _spec(self, kind: str, **kw) -> dict:
        t = self.task
        return {"kind": kind, "version": ARTIFACT_VERSION, "scenario": t.scenario, "trial": t.trial,
                "manifest": t.manifest_hash, "arch": t.arch, "num_classes": t.num_classes, **kw}

    def _trained(self) -> dict:
        """The key part of a trained artifact's precision: none for fp32 (every key stored before
        ``amp`` existed), else ``{"amp": "bf16"}``, so bf16 weights never stand in for fp32 ones."""
        return {} if self.task.amp == "fp32" else {"amp": self.task.amp}

    def _get(self, kind: str, spec: dict, compute, label: str) -> dict:
        if kind in self._cache and self.keys.get(kind) == self.store.key(spec):
            return self._cache[kind]
        t0 = time.perf_counter()
        tensors, key, computed = self.store.get_or_compute(kind, spec, compute, self.task.manifest_hash)
        if computed:
            self.trained.append(kind)
            self.timings[f"{label}_s"] = time.perf_counter() - t0
        self.keys[kind] = key
        self.digests[kind] = tensor_digest(tensors)
        self._cache[kind] = tensors
        return tensors

    # -- θ_init, original, retrain ----------------------------------------------------------
    def init_weights(self) -> dict:
        """θ_init: the architecture drawn from the trial's init stream; in a pretrained scenario
        the pretrained weights then replace every entry they have (the head stays drawn)."""
        seed = stream_seed(self.task.trial, "init")
        pre, extra = None, {}
        if self.task.pretrained is not None:
            pre, tag = self.task.pretrained()
            extra = {"pretrained": tag}  # only then: the keys of from-scratch scenarios are unchanged

        def compute():
            import torch

            loaded = pre
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                state = self.task.new_model().state_dict()
                if callable(pre):  # CLIP: loaded (and its heads built) only on a store miss
                    loaded = pre()
            if loaded is not None:
                for k, v in loaded.items():
                    state[k] = v.to(state[k].dtype).clone()
            return state

        return self._get("init", self._spec("init", seed=seed, **extra), compute, "init")

    def _train_spec(self, split: str, kind: str) -> dict:
        self.init_weights()
        return self._spec(kind, init=self.keys["init"], recipe=self.task.recipe.spec(), data=split,
                          order_seed=stream_seed(self.task.trial, "order", kind), **self._trained())

    def _train_on(self, split: str, kind: str) -> dict:
        init = self.init_weights()
        spec = self._train_spec(split, kind)
        return self._get(kind, spec, lambda: train_model(self.task, init, split, kind, self.device), kind)

    def train_shared(self) -> None:
        """The original and the Retrain oracle, computed where they are missing. With a remote executor
        they train at once, as two jobs (a worker gets θ_init and its one split); the driver writes them."""
        from .executor import Job, failures

        kinds = [("train", "original")] if self.task.original_source != "pretrained" else []
        if self.task.scoring.has_oracle:
            kinds.append(("retain", "retrain"))
        if self.executor.name != "local":
            init = self.init_weights()
            todo = [(split, kind, self._train_spec(split, kind)) for split, kind in kinds]
            todo = [t for t in todo if not self.store.has(t[1], self.store.key(t[2]))]
            jobs = [Job(self.store.key(spec), train_model, (self.task.detached([split]), init, split, kind, self.device),
                        label=f"{kind} (trial {self.task.trial})") for split, kind, spec in todo]
            specs = {self.store.key(spec): (kind, spec) for _, kind, spec in todo}

            def write(o):
                if o.ok:
                    kind, spec = specs[o.job.key]
                    self.store.put_new(kind, o.job.key, o.value, spec, self.task.manifest_hash)
                    self.trained.append(kind)
                    self.timings[f"{kind}_s"] = o.worker_s

            bad = failures(self.executor.run(jobs, desc=f"shared stages (trial {self.task.trial})", on_done=write,
                                             unit="model"))
            if bad:
                from .errors import StoreError

                raise StoreError("; ".join(f"{o.job.label} failed twice: {o.error}" for o in bad))
        self.original()
        if self.task.scoring.has_oracle:
            self.retrain()

    def original(self) -> dict:
        if self.task.original_source == "pretrained":  # CLIP: θ_0 is the zero-shot model, never trained
            state = self.init_weights()
            self.keys["original"], self.digests["original"] = self.keys["init"], self.digests["init"]
            return state
        return self._train_on("train", "original")

    def retrain(self) -> dict:
        if not self.task.scoring.has_oracle:
            raise ConfigError(f"scenario {self.task.scenario!r} has no retrain oracle")
        return self._train_on("retain", "retrain")

    # -- the pool --------------------------------------------------------------------------
    def pool_grid(self, name: str):
        try:
            return self.task.pools[name]
        except KeyError:
            from .errors import unknown

            raise unknown(f"pool of scenario {self.task.scenario!r}", name, self.task.pools) from None

    def pool_members(self, name: str, size: int = 0, subset: str = "0", augment: str = "pool") -> list[tuple[int, "Recipe"]]:
        """(index in canonical order, recipe) of the members a run merges: all, or ``size`` of them,
        the ``subset`` draw (PROTOCOL §9.5 v2) or the first ``size`` (``prefix``, protocol 1);
        ``augment=v1`` trains them as protocol 1 did (§6.3)."""
        from .recipe import subset_indices

        grid = self.pool_grid(name)
        if augment == "v1":
            grid = grid.as_v1()
        members = grid.members(self.task.trial)
        if size > len(members):
            raise ConfigError(f"pool.size={size} but pool {name!r} has {len(members)} members")
        if subset == "prefix":
            idx = list(range(size or len(members)))
        else:
            idx = subset_indices(len(members), size or len(members), int(subset), self.task.trial, name)
        return [(i, members[i]) for i in idx]

    def pool_stream(self, name: str, size: int, timings: dict, *, subset: str = "0", augment: str = "pool",
                    info: dict | None = None, linear: bool = False) -> Iterator[tuple[dict, dict]]:
        """Yield (member info, τ_i) for ``pool_members``, in canonical order; ``info`` gets the pool's
        name, n, subset and the members' indices (what the record says it merged). ``linear``: the
        linear pool (PROTOCOL §4.8), the same configs and seeds fine-tuned as f_lin, stored apart."""
        from .taskvec import task_vector

        chosen = self.pool_members(name, size, subset, augment)
        if self.pool_only is not None:
            chosen = [c for c in chosen if c[0] in self.pool_only]
        members = [r for _, r in chosen]
        if info is not None:
            info["pool"] = {"name": name, "n": len(members), "of": len(self.pool_grid(name)), "subset": subset,
                            "augment": augment, "members": [i for i, _ in chosen]}
            if linear:  # only then: the info of standard pools is as it was
                info["pool"]["linear"] = True
        theta0 = self.original()
        okey = self.keys["original"]
        timings.setdefault("pool_s", 0.0)
        timings.setdefault("pool_trained", 0)
        timings["pool_n"] = len(members)
        specs = []
        stack = int(getattr(self.executor, "stack", 0))
        for recipe in members:
            # [OURS] keyed by config, not position; run r ≠ 0 of an ensemble: (pool, r, config) (§8.7.0)
            seed = stream_seed(self.task.trial, "pool", *(() if self.run == 0 else (self.run,)), recipe.spec())
            form = {"form": "linear"} if linear else {}  # §4.8: its own artifact; standard keys unchanged
            # a member trained in a stack is its one-at-a-time twin only up to float reordering: its own key,
            # so the members the records were made from are never mixed with stacked ones (only when on:
            # every other key is unchanged). train_many has neither autocast nor the tangent-space model:
            # an amp=bf16 or linear pool is trained one at a time.
            stacked = ({"stacked": True} if stack and stackable(recipe) and self.task.amp == "fp32" and not linear
                       else {})
            specs.append((recipe, seed, self._spec("pool-member", original=okey, recipe=recipe.spec(), data="forget",
                                                   seed=seed, **form, **stacked, **self._trained())))
        if stack:
            self._train_pool_stacked(name, specs, theta0, timings, stack)
        if self.executor.name != "local":
            self._train_pool_remotely(name, specs, theta0, timings, linear)
        with progress.bar(len(members), f"pool {name} (trial {self.task.trial})", unit="model") as pbar:
            for i, (recipe, seed, spec) in enumerate(specs):
                def compute(recipe=recipe, seed=seed, i=i, spec=spec):
                    if spec.get("stacked"):  # stored by _train_pool_stacked unless another driver removed it
                        return train_members(self.task, theta0, [recipe], [seed], self.param_keys, self.device,
                                             f"member {i}")[0]
                    return train_member(self.task, theta0, recipe, seed, self.param_keys, self.device, f"member {i}",
                                        linear)

                t0 = time.perf_counter()
                theta, key, computed = self.store.get_or_compute("pool", spec, compute, self.task.manifest_hash)
                if computed:
                    timings["pool_s"] += time.perf_counter() - t0
                    timings["pool_trained"] += 1
                pbar.update(1)
                yield ({"index": chosen[i][0], "key": key, "recipe": recipe.spec()},
                       task_vector(theta, theta0, self.param_keys))

    def _train_pool_stacked(self, name: str, specs: list, theta0: dict, timings: dict, stack: int) -> None:
        """The stackable members the store lacks, up to ``stack`` per stacked model, each stack one job of
        the executor (the local one too); each member is written as its stack arrives. Members of one stack
        share a batch size and optimiser (``stacked.stack_key``); those with the most epochs are stacked
        together, so a stack stays full for as long as it trains."""
        from .executor import Job
        from .stacked import stack_key

        mh = self.task.manifest_hash
        missing = [(i, r, seed, spec) for i, (r, seed, spec) in enumerate(specs)
                   if spec.get("stacked") and not self.store.has("pool", self.store.key(spec))]
        if not missing:
            return
        by_key: dict[tuple, list] = {}
        for m in sorted(missing, key=lambda m: (-int(m[1].epochs), m[0])):
            by_key.setdefault(stack_key(m[1]), []).append(m)
        groups = [g[j:j + stack] for g in by_key.values() for j in range(0, len(g), stack)]
        groups.sort(key=lambda g: -int(g[0][1].epochs))  # longest first (LPT), as one member per job is
        detached = self.task.detached(["forget"])
        jobs, of_job = [], {}
        for g in groups:
            keys = [self.store.key(spec) for _, _, _, spec in g]
            label = "members " + ",".join(str(i) for i, _, _, _ in g)
            job = Job(self.store.key({"stack": keys}), train_members,
                      (detached, theta0, [r for _, r, _, _ in g], [seed for _, _, seed, _ in g], self.param_keys,
                       self.device, label), label=label)
            jobs.append(job)
            of_job[job.key] = [(k, spec) for k, (_, _, _, spec) in zip(keys, g)]

        def write(o):
            if o.ok:
                for (key, spec), theta in zip(of_job[o.job.key], o.value):
                    self.store.put_new("pool", key, theta, spec, mh)
                    timings["pool_trained"] += 1

        self._run_pool_jobs(jobs, f"pool {name} (trial {self.task.trial}, stacks of up to {stack})", "stack", write,
                            timings, "stacks of pool members")

    def _train_pool_remotely(self, name: str, specs: list, theta0: dict, timings: dict, linear: bool = False) -> None:
        """Send every member the store lacks to the executor; write each one as it arrives. A member
        that failed twice is reported once the others are stored (they are kept for the next run)."""
        from .executor import Job

        mh = self.task.manifest_hash
        missing = [(i, r, seed, spec) for i, (r, seed, spec) in enumerate(specs)
                   if not self.store.has("pool", self.store.key(spec))]
        if not missing:
            return
        detached = self.task.detached(["forget"])  # a worker gets D_f and θ_0, nothing else
        jobs = [Job(self.store.key(spec), train_member,
                    (detached, theta0, r, seed, self.param_keys, self.device, f"member {i}", linear),
                    label=f"member {i}")
                for i, r, seed, spec in missing]
        # longest first (epochs x data: every member sees D_f): the last job to start is a short one, so
        # the workers finish together (list scheduling, LPT)
        jobs.sort(key=lambda j: -int(j.args[2].epochs))
        spec_of = {self.store.key(spec): spec for _, _, _, spec in missing}

        def write(o):
            if o.ok:
                self.store.put_new("pool", o.job.key, o.value, spec_of[o.job.key], mh)  # a member another driver stored meanwhile is kept
                timings["pool_trained"] += 1

        self._run_pool_jobs(jobs, f"pool {name} (trial {self.task.trial}, {self.executor.name})", "model", write,
                            timings, "pool members")

    def _run_pool_jobs(self, jobs: list, desc: str, unit: str, write, timings: dict, what: str) -> None:
        """Run pool-training ``jobs`` on the executor, ``write`` storing each as it arrives; the jobs that
        failed twice are reported once the others are stored (they are kept for the next run)."""
        from .errors import StoreError
        from .executor import failures

        t0 = time.perf_counter()
        outcomes = self.executor.run(jobs, desc=desc, on_done=write, unit=unit)
        timings["pool_s"] += time.perf_counter() - t0
        bad = failures(outcomes)
        if bad:
            raise StoreError(f"{len(bad)} of {len(jobs)} {what} failed twice (the other {len(jobs) - len(bad)} "
                             "are stored): " + "; ".join(f"{o.job.label}: {o.error}" for o in bad))

    def model_of(self, state: dict, linear: bool = False, method: str | None = None):
        """``state`` in the task's model on the device; ``linear``: as θ_0's linearised model, which is how
        every edit of a linear pool is evaluated, never as f(θ_0 − λτ) (PROTOCOL §4.8). ``method``: the
        plugin that returned ``state``, named when its keys are not the model's."""
        model = self.task.new_model()
        if method is not None:
            from .errors import StoreError

            missing = set(model.state_dict()) ^ set(state)
            if missing:
                raise StoreError(f"method {method!r} returned a state dict whose keys differ from the model's: "
                                 f"{sorted(missing)[:5]}")
        model.load_state_dict(state)
        if linear:
            from .tangent import Linearized

            model = Linearized(model, self.original())
        return model.to(self.device)

    def member_points(self, members: list[dict], linear: bool = False) -> list[dict]:
        """Acc D_r, D_f, D_test of θ_0 − λ_i·τ_i for stored pool members (evaluation stage only)."""
        from .taskvec import InPlaceEditor, task_vector

        theta0 = self.original()
        model = self.model_of(theta0, linear)
        out = []
        for m in members:
            theta, _ = self.store.get("pool", m["key"], self.task.manifest_hash)
            InPlaceEditor(model, theta0, task_vector(theta, theta0, self.param_keys)).set(float(m["lambda"]))
            out.append({**m, **self.evaluator.measure(model, list(self.task.scoring.member_points))})
        return out

    # -- cached metrics ----------------------------------------------------------------------
    def metrics_of(self, kind: str) -> dict:
        """Full evaluation of the original or retrain model, cached in the store by model key."""
        if kind in self._metrics:
            return self._metrics[kind]
        state = self.original() if kind == "original" else self.retrain()
        key = self.metrics_key(kind)
        doc = self.store.get_json("metrics", key)
        if doc is None:
            model = self.task.new_model()
            model.load_state_dict(state)
            lg: dict = {}
            doc = self.evaluator.measure(model.to(self.device), self.evaluator.report_names(), cache=lg)
            self.store.put_json("metrics", key, doc)
            self._eval_logits[kind] = (model, lg)  # the outputs then need no forward of their own
        self._metrics[kind] = doc
        return doc

    def metrics_key(self, kind: str) -> str:
        """The store key of the original's or Retrain's full evaluation (after that stage ran)."""
        return self.store.key({"metrics": self.keys[kind], "names": self.evaluator.report_names(),
                               "version": ARTIFACT_VERSION})

    def retrain_metrics(self) -> dict:
        return self.metrics_of("retrain")

    def reference(self, names: list[str]) -> dict:
        """Retrain's metrics ``names``: what an oracle rule compares a point with, on the same splits
        (the selection-time subsamples of PROTOCOL §5(d) too). The full §8 ones come from the stored
        evaluation; the others are measured once per process."""
        have = {**self.metrics_of("retrain"), **self._reference}
        todo = [n for n in names if n not in have]
        if todo:
            model = self.task.new_model()
            model.load_state_dict(self.retrain())
            # Retrain's logits are kept for the process: the rules ask for their metrics one set at a time
            # (selection-time subsamples, then each test half of oracle_split_test's report)
            self._reference.update(self.evaluator.measure(model.to(self.device), todo, self._reference_logits))
            have.update(self._reference)
        return {n: have[n] for n in names}

    # -- per-example outputs (PROTOCOL §8.7.0) ------------------------------------------------------------
    def outputs_of(self, kind: str) -> tuple[str | None, str | None]:
        """(store key, None) of the original's or Retrain's per-example outputs, computed where missing;
        (None, why) where they cannot be stored (``outputs_for``)."""
        state = self.original() if kind == "original" else self.retrain()
        model, lg = self._eval_logits.pop(kind, (None, None))
        return self.outputs_for(state, digest=self.digests[kind], model=model, logits=lg)

    def outputs_for(self, state: dict, *, digest: str | None = None, model=None,
                    logits: dict | None = None, linear: bool = False) -> tuple[str | None, str | None]:
        """(store key, None) of the per-example outputs (φ, arg-max) of the model with weights ``state`` on
        every example of the manifest (``ensemble.outputs``), computed and stored where missing. ``model``:
        those weights already loaded; ``logits``: splits already forwarded through them (the final
        evaluation's cache), so only the examples they lack are forwarded.

        (None, why) when they cannot be stored, and the run goes on (its metrics do not depend on them):
        a logit is not finite (a diverged model has no φ), or a read-only store lacks them."""
        from .ensemble import outputs

        form = {"form": "linear"} if linear else {}  # the same weights as f_lin are another model (§4.8)
        spec = self._spec(outputs.KIND, weights=digest or tensor_digest(state), outputs=outputs.OUTPUTS_VERSION, **form)
        key = self.store.key(spec)
        if self.store.has(outputs.KIND, key):
            return key, None
        if self.store.problem:
            return None, "the store is read-only and lacks them"
        if model is None:
            model = self.model_of(state, linear)
        tensors = outputs.compute(self.task, model, self.device, logits)
        if tensors is None:
            return None, "the model's logits are not all finite"
        self.store.put_new(outputs.KIND, key, tensors, spec, self.task.manifest_hash)
        outputs.store_labels(self.store, self.task)
        return key, None
