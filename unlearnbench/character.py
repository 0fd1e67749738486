"""The recipe character check of PROTOCOL §2.1, run whenever a recipe changes (trial 0):

- the original reaches Acc(D_train) >= 99.5%;
- Acc(D_train) - Acc(D_test) >= 1.5 points;
- Retrain's Acc(D_f) is below the original's, and Retrain's MIA-efficacy above the original's.
"""
from __future__ import annotations

import time
from pathlib import Path


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
    checks = {
        "original Acc(D_train) >= 99.5": (train_acc, train_acc >= 99.5),
        "Acc(D_train) - Acc(D_test) >= 1.5": (train_acc - orig["acc_test"], train_acc - orig["acc_test"] >= 1.5),
        "Retrain Acc(D_f) < original Acc(D_f)": ((retr["acc_forget"], orig["acc_forget"]),
                                                 retr["acc_forget"] < orig["acc_forget"]),
        "Retrain MIA > original MIA": ((retr["mia"], orig["mia"]), retr["mia"] > orig["mia"]),
    }
    return {"scenario": task.scenario, "trial": trial, "original": {**orig, "acc_train": train_acc},
            "retrain": retr, "checks": {k: {"value": v, "ok": ok} for k, (v, ok) in checks.items()},
            "ok": all(ok for _, ok in checks.values()), "timings": dict(stages.timings),
            "wall_s": time.perf_counter() - t0, "store": str(Path(store.root))}
