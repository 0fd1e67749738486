"""Per-example outputs of a final model, cached in the store (PROTOCOL §8.7.0; issue 18 acceptance 1).

Every final model the harness evaluates (the original, Retrain, the unlearned model of a run, each
``selection.also`` rule's model, and every ensemble member) stores, for every example of the trial's
manifest (the union of its splits: D_train ∪ D_val ∪ D_test, class-wise D_test's forget class too):

- ``phi``: φ = z_y − LSE_{j≠y} z, computed in float64 from eval-mode logits (``margin.margins``) and
  stored as **float32**. float16 is too coarse: its spacing is 2⁻⁷ ≈ 0.008 on [8, 16) and 0.03 on
  [32, 64), as wide as the challenge metric's 0.01 threshold grid (§8.7.2), so ties would decide rules;
  float32's relative spacing is 6·10⁻⁸ (7.6·10⁻⁶ at |φ| = 100). 4 bytes an example: 7 KB a digits model,
  280 KB a Fashion-MNIST one;
- ``pred``: the arg-max class (int16), from the same logits as the accuracies (``metrics.accuracy``), so
  each ensemble's Acc D_r and Acc D_test′ (the challenge score's utility ratios) come from the cache too.
  Accuracy is not a function of φ (φ < 0 can still be the arg-max among 10 classes).

Row i is the i-th smallest data index of the manifest (``examples``); ``columns`` finds a split's rows.
The artifact is keyed by the weights' content digest (``store.tensor_digest``), the index manifest and
``OUTPUTS_VERSION``, so equal weights share one artifact, and a metric over these arrays can be added or
corrected without retraining.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from .margin import margins

if TYPE_CHECKING:
    import torch

    from ..scenario import Task
    from ..store import Store

KIND = "outputs"  # the store kind of one model's outputs
LABELS_KIND = "outputs-labels"  # the labels of a manifest's examples, stored once
OUTPUTS_VERSION = 1  # bump when φ or pred change meaning: the old artifacts then are not found


def examples(manifest: Mapping) -> np.ndarray:
    """The data indices the outputs cover, sorted: the union of every split of the manifest."""
    parts = [np.asarray(v, dtype=np.int64) for v in manifest["splits"].values()]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def columns(manifest: Mapping, split: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Where split ``split``'s examples sit in the outputs (``rows``: ``examples(manifest)``, when at hand)."""
    rows = examples(manifest) if rows is None else rows
    idx = np.asarray(manifest["splits"][split], dtype=np.int64)
    return np.searchsorted(rows, idx)


def compute(task: "Task", model: "torch.nn.Module", device: str = "cpu",
            logits: Mapping[str, "torch.Tensor"] | None = None) -> dict[str, "torch.Tensor"] | None:
    """The outputs of ``model`` on every example of ``task``'s manifest, as tensors to store; None when
    a logit is not finite (a diverged model: there is no φ to cache, and the store refuses NaN).

    ``logits``, when given, holds the logits of splits already forwarded through this model (the final
    evaluation's ``Evaluator.measure`` cache): their rows are taken from there, and only the examples no
    such split covers are forwarded, each through its own split's route (a multi-head model's head).
    Exact because a sample's logits do not depend on the batch around it
    (test_logits_do_not_depend_on_eval_batch)."""
    import torch

    from ..metrics import logits as forward

    man = task.manifest
    rows = examples(man)
    phi = np.zeros(len(rows), dtype=np.float64)
    pred = np.zeros(len(rows), dtype=np.int64)
    filled = np.zeros(len(rows), dtype=bool)

    def fill(cols: np.ndarray, lg: "torch.Tensor", y: "torch.Tensor") -> bool:
        if not torch.isfinite(lg).all():
            return False
        phi[cols] = margins(lg, y)
        pred[cols] = lg.argmax(1).numpy()
        filled[cols] = True
        return True

    by_size = sorted(man["splits"], key=lambda s: (-len(man["splits"][s]), s))
    cached = [s for s in by_size if logits and s in logits]
    for split in cached + [s for s in by_size if s not in cached]:
        cols = columns(man, split, rows)
        new = ~filled[cols]
        if not new.any():
            continue
        # the split's own tensors: a task whose indices address several arrays (CLIP: the control data
        # set's rows after the forget set's) gives each split its rows and labels (``Task.tensors``)
        x, y = task.tensors(split)
        at = torch.as_tensor(np.flatnonzero(new))
        if split in cached:
            lg = logits[split][at]
        else:
            task.route(model, split)
            lg = forward(model, x[at], device)
        if not fill(cols[new], lg, y[at]):
            task.route(model, None)
            return None
    task.route(model, None)
    phi32 = phi.astype(np.float32)
    if not np.isfinite(phi32).all():  # a margin beyond float32's range
        return None
    if task.num_classes > np.iinfo(np.int16).max:
        raise ValueError(f"outputs store pred as int16; {task.num_classes} classes do not fit")
    return {"phi": torch.from_numpy(phi32), "pred": torch.from_numpy(pred.astype(np.int16))}


def load(store: "Store", key: str, manifest_hash: str | None = None) -> dict[str, np.ndarray]:
    """One model's cached outputs: ``phi`` as float64 (what the metrics compute in) and ``pred``."""
    tensors, _ = store.get(KIND, key, manifest_hash)
    return {"phi": tensors["phi"].numpy().astype(np.float64), "pred": tensors["pred"].numpy().astype(np.int64)}


def stack(store: "Store", keys: Iterable[str], manifest: Mapping, split: str,
          manifest_hash: str | None = None) -> dict[str, np.ndarray]:
    """The outputs of several models (an ensemble) on one split, as the metric functions take them:
    ``phi`` (N, n) float64 and ``pred`` (N, n)."""
    rows = examples(manifest)
    cols = columns(manifest, split, rows)
    got = [load(store, k, manifest_hash) for k in keys]
    for g in got:
        if len(g["phi"]) != len(rows):
            raise ValueError(f"cached outputs hold {len(g['phi'])} examples, the manifest {len(rows)}: another manifest")
    if not got:
        return {"phi": np.zeros((0, len(cols))), "pred": np.zeros((0, len(cols)), dtype=np.int64)}
    return {"phi": np.stack([g["phi"][cols] for g in got]), "pred": np.stack([g["pred"][cols] for g in got])}


# -- the labels, once per manifest: what ``pred`` is scored against without loading the data set --------------

def labels_key(store: "Store", manifest_hash: str) -> str:
    return store.key({"kind": LABELS_KIND, "manifest": manifest_hash, "version": OUTPUTS_VERSION})


def store_labels(store: "Store", task: "Task") -> str:
    """The labels of ``examples(task.manifest)`` (int64), stored once per manifest; returns the key."""
    import torch

    key = labels_key(store, task.manifest_hash)
    if not store.has(LABELS_KIND, key):
        rows = examples(task.manifest)
        y = torch.zeros(len(rows), dtype=torch.int64)
        for split in task.manifest["splits"]:  # each split's own labels (``Task.tensors``: CLIP's control set)
            y[torch.as_tensor(columns(task.manifest, split, rows), dtype=torch.long)] = task.tensors(split)[1].to(torch.int64)
        spec = {"kind": LABELS_KIND, "manifest": task.manifest_hash, "version": OUTPUTS_VERSION}
        store.put_new(LABELS_KIND, key, {"y": y}, spec, task.manifest_hash)
    return key


def load_labels(store: "Store", manifest_hash: str) -> np.ndarray:
    tensors, _ = store.get(LABELS_KIND, labels_key(store, manifest_hash), manifest_hash)
    return tensors["y"].numpy()


def accuracy(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Top-1 accuracy in % of each model (row) of ``pred`` (N, n) against ``labels`` (n,)."""
    return 100.0 * (np.asarray(pred) == np.asarray(labels)[None, :]).mean(axis=1)
