"""The evaluator: metrics by name, each computed on a known split (PROTOCOL §8).

``acc_<split>`` is top-1 accuracy on a manifest split; ``mia`` is MIA-efficacy. Every
metric declares the data it reads (``Scoring.metric_splits``, from the scenario's split roles),
which is what lets selection rules and methods be held to the splits they declared.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .metrics import accuracy, confidence, logits, mia_efficacy

if TYPE_CHECKING:
    import torch

    from .scenario import Task

MIA_SPLITS = ("mia_members", "mia_nonmembers", "forget")


def mia_splits(name: str) -> tuple[str, str, str]:
    """(members, non-members, forget) of MIA metric ``name``: ``mia`` the full §8.2 sets, ``mia_<s>``
    the subsample ``s`` (``sel``, ``a``, ``b``, ``sel_a``: the selection-time sets of PROTOCOL §5(d))."""
    if name == "mia":
        return MIA_SPLITS
    s = name[4:]
    return (f"mia_members_{s}", f"mia_nonmembers_{s}", "forget")


def is_mia(name: str) -> bool:
    return name == "mia" or name.startswith("mia_")


class Evaluator:
    def __init__(self, task: "Task", device: str = "cpu"):
        self.task = task
        self.device = device
        self._cache: dict[str, tuple] = {}
        # Splits with identical indices (val and val_retain under random forgetting) are
        # evaluated once: a λ sweep then costs one forward pass per distinct split.
        first: dict[tuple, str] = {}
        self._same = {name: first.setdefault(tuple(idx), name) for name, idx in task.manifest["splits"].items()}
        self._rows: dict[tuple[str, str], "torch.Tensor | None"] = {}
        self.forwarded = 0  # images put through a model, for the tests and benchmarks

    def _rows_in(self, sub: str, sup: str) -> "torch.Tensor | None":
        """Where each sample of split ``sub`` sits in split ``sup``, or None if ``sub`` ⊄ ``sup``.

        A split inside another one that is evaluated anyway (val_retain in val, the MIA members in
        retain, test_forget_class... ) takes its logits from that pass: class-wise λ selection then
        forwards D_f + D_val instead of D_f + D_val + D_val^r, about a third less. Exact because a
        sample's logits do not depend on the batch around it (test_logits_do_not_depend_on_eval_batch).
        """
        key = (sub, sup)
        if key not in self._rows:
            import numpy as np
            import torch

            a, b = np.asarray(self.task.indices(sub)), np.asarray(self.task.indices(sup))
            rows = None
            if len(a) <= len(b):
                order = np.argsort(b, kind="stable")
                b_sorted = b[order]
                at = np.searchsorted(b_sorted, a)
                if len(a) == 0 or (at.max() < len(b) and np.array_equal(b_sorted[at], a)):
                    rows = torch.as_tensor(order[at], dtype=torch.long)
            self._rows[key] = rows
        return self._rows[key]

    def split(self, name: str) -> tuple["torch.Tensor", "torch.Tensor"]:
        if name not in self._cache:
            self._cache[name] = self.task.tensors(name)
        return self._cache[name]

    def measure(self, model: "torch.nn.Module", names: list[str],
                cache: "dict[str, torch.Tensor] | None" = None, *,
                logits_of: "Callable[[str, torch.Tensor], torch.Tensor] | None" = None) -> dict[str, float]:
        """The metrics ``names`` of ``model``. ``cache``, when given, holds the logits of splits already
        forwarded through these same weights (the caller's promise) and receives the new ones: a λ point
        measured in stages (``selection.sweep``'s pruned oracle rules) forwards each split once.
        ``logits_of(split, x)``, when given, gives a split's logits in place of a forward through
        ``model`` (which is still routed to the split first): a linear model's λ sweep computes them
        from one jvp per split (``tangent.TangentLine``, PROTOCOL §4.8)."""
        need: list[str] = []
        for n in names:
            self.task.scoring.metric_splits(n)  # an unknown metric is an error before any forward
            for s in (mia_splits(n) if is_mia(n) else (n[4:],)):
                if s not in need:
                    need.append(s)
        distinct = {self._same.get(s, s) for s in need}
        computed: dict[str, "torch.Tensor"] = cache if cache is not None else {}
        for c in sorted(distinct, key=lambda c: (-len(self.task.indices(c)), c)):  # supersets first
            if c in computed:
                continue
            for sup, lg_sup in list(computed.items()):
                rows = self._rows_in(c, sup)
                if rows is not None:
                    computed[c] = lg_sup[rows]
                    break
            else:
                x = self.split(c)[0]
                self.task.route(model, c)
                if logits_of is not None:
                    computed[c] = logits_of(c, x)
                    continue
                self.forwarded += len(x)
                computed[c] = logits(model, x, self.device)
        self.task.route(model, None)
        lg = {s: computed[self._same.get(s, s)] for s in need}
        out: dict[str, float] = {}
        for n in names:
            if is_mia(n):
                mem, non, fgt = (confidence(lg[s], self.split(s)[1]) for s in mia_splits(n))
                out[n] = mia_efficacy(mem, non, fgt)
            else:
                out[n] = accuracy(lg[n[4:]], self.split(n[4:])[1])
        return out

    def report_names(self) -> list[str]:
        """What every final evaluation reports: the task's accuracies, MIA, and class-wise extras."""
        names = [f"acc_{s}" for s in self.task.scoring.report]
        if self.task.class_wise:
            names.append("acc_test_forget_class")
        if self.task.scoring.mia:
            names.append("mia")
        return names
