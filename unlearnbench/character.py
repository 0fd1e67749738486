"""The recipe character check of PROTOCOL §2.1, on every trial of a board (v2; v1 checked trial 0):

- the original reaches Acc(D_train) >= 99.5%;
- Acc(D_train) - Acc(D_test) >= 1.5 points;
- Retrain's Acc(D_f) is below the original's, and Retrain's MIA-efficacy above the original's.

``check_recipe`` trains (or loads) one trial's original and Retrain and measures Acc(D_train);
``character_checks`` is the test itself, on metrics alone, so the board runs it on every trial
from the records (``trial_character``: Acc(D_train) there is the size-weighted mean of Acc D_r and
Acc D_f, D_train being D_r ∪ D_f), training nothing.
"""
from __future__ import annotations

import time
from pathlib import Path

TRAIN_ACC_MIN = 99.5  # the original fits D_train [PROTOCOL §2.1]
TRAIN_TEST_GAP_MIN = 1.5  # points of overfitting, so that forgetting is measurable [§2.1]


def character_checks(orig: dict, retr: dict, train_acc: float) -> dict:
    """The four §2.1 conditions: name -> {"value", "ok"} (``orig``/``retr``: acc_test, acc_forget, mia)."""
    checks = {
        f"original Acc(D_train) >= {TRAIN_ACC_MIN}": (train_acc, train_acc >= TRAIN_ACC_MIN),
        f"Acc(D_train) - Acc(D_test) >= {TRAIN_TEST_GAP_MIN}": (train_acc - orig["acc_test"],
                                                             train_acc - orig["acc_test"] >= TRAIN_TEST_GAP_MIN),
        "Retrain Acc(D_f) < original Acc(D_f)": ((retr["acc_forget"], orig["acc_forget"]),
                                                 retr["acc_forget"] < orig["acc_forget"]),
        "Retrain MIA > original MIA": ((retr["mia"], orig["mia"]), retr["mia"] > orig["mia"]),
    }
    return {k: {"value": v, "ok": bool(ok)} for k, (v, ok) in checks.items()}


def train_accuracy(orig: dict, sizes: dict) -> float | None:
    """Acc(D_train) from Acc D_r and Acc D_f weighted by |D_r| and |D_f| (exact: D_train = D_r ∪ D_f,
    disjoint); None without the sizes (records from before they were recorded) or the metrics."""
    nr, nf = sizes.get("retain"), sizes.get("forget")
    if not nr or nf is None or orig.get("acc_retain") is None or orig.get("acc_forget") is None:
        return None
    return (nr * orig["acc_retain"] + nf * orig["acc_forget"]) / (nr + nf)


def trial_character(rec: dict) -> dict | None:
    """The §2.1 check of a record's trial, from its ``original``/``retrain`` metrics and split sizes:
    {"trial", "ok", "checks", "failed": [names]}; None where it cannot be run (no Retrain, no sizes)."""
    orig, retr = rec.get("original") or {}, rec.get("retrain")
    if not retr or any(orig.get(k) is None or retr.get(k) is None for k in ("acc_test", "acc_forget", "mia")):
        return None
    acc = train_accuracy(orig, rec.get("split_sizes") or {})
    if acc is None:
        return None
    checks = character_checks(orig, retr, acc)
    failed = [k for k, c in checks.items() if not c["ok"]]
    return {"trial": rec["trial"], "ok": not failed, "checks": checks, "failed": failed}


def check_recipe(scenario, cfg_section, trial: int, store, data_root: str | None, device: str = "cpu",
                 threads: int = 0) -> dict:
    import torch

    from .runner import pick_threads
    from .stages import Stages

    t0 = time.perf_counter()
    task = scenario.build_task(cfg_section, trial, data_root)
    torch.set_num_threads(pick_threads(threads, task.threads))
    stages = Stages(task, store, device)
    orig = stages.metrics_of("original")
    retr = stages.metrics_of("retrain")
    model = task.new_model()
    model.load_state_dict(stages.original())
    train_acc = stages.evaluator.measure(model, ["acc_train"])["acc_train"]
    checks = character_checks(orig, retr, train_acc)
    return {"scenario": task.scenario, "trial": trial, "original": {**orig, "acc_train": train_acc},
            "retrain": retr, "checks": checks, "ok": all(c["ok"] for c in checks.values()),
            "timings": dict(stages.timings), "wall_s": time.perf_counter() - t0, "store": str(Path(store.root))}
