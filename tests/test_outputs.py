"""Per-example outputs of every final model, cached in the store (issue 18 acceptance 1, PROTOCOL §8.7.0):
what they hold, how they are keyed, that a run's record references them, and that the ensemble metrics are
computed from them alone. Untrained models and a stubbed trainer: no test here trains."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unlearnbench.config import resolve
from unlearnbench.ensemble import klom, outputs
from unlearnbench.ensemble.margin import margins
from unlearnbench.metrics import logits
from unlearnbench.runner import build_task, run_trial
from unlearnbench.stages import Stages
from unlearnbench.store import Store


def _task(host, scenario="digits-10pct"):
    return build_task(resolve(host, scenario=scenario, method="retrain"), 0, None)


def _model(task, seed=0):
    torch.manual_seed(seed)
    return task.new_model()


@pytest.mark.parametrize("scenario", ["digits-10pct", "digits-class"])
def test_outputs_cover_every_example_as_a_direct_forward_gives_them(host, tmp_path, scenario):
    """φ (float32) and the arg-max of every example of D_train ∪ D_val ∪ D_test (class-wise: the forgotten
    class's test examples too), row i the i-th data index; φ is margins() of the eval-mode logits."""
    task = _task(host, scenario)
    stages = Stages(task, Store(tmp_path))
    model = _model(task)
    key, why = stages.outputs_for(model.state_dict())
    assert why is None
    tensors, side = stages.store.get(outputs.KIND, key, task.manifest_hash)
    assert tensors["phi"].dtype == torch.float32 and tensors["pred"].dtype == torch.int16
    rows = outputs.examples(task.manifest)
    assert len(rows) == len(task.data.y) == 1797  # every digit, whatever split holds it
    assert set(np.concatenate([task.indices(s) for s in ("train", "val", "test")])) <= set(rows)
    lg = logits(model, task.data.x[torch.as_tensor(rows)])
    got = outputs.load(stages.store, key)
    np.testing.assert_array_equal(got["phi"], margins(lg, task.data.y[torch.as_tensor(rows)]).astype(np.float32))
    np.testing.assert_array_equal(got["pred"], lg.argmax(1).numpy())
    y = outputs.load_labels(stages.store, task.manifest_hash)
    measured = stages.evaluator.measure(model, ["acc_forget", "acc_test", "acc_retain"])
    for split in ("forget", "test", "retain"):  # the accuracies come back from pred and the stored labels
        cols = outputs.columns(task.manifest, split)
        assert outputs.accuracy(got["pred"][None, cols], y[cols])[0] == pytest.approx(measured[f"acc_{split}"],
                                                                                     abs=1e-9)
    assert side["spec"]["weights"] and side["manifest"] == task.manifest_hash


def test_the_evaluation_logits_are_reused_bit_for_bit(host, tmp_path, monkeypatch):
    """Given the final evaluation's logits, the outputs forward nothing more, and are the same bytes."""
    import unlearnbench.metrics as metrics

    task = _task(host)
    model = _model(task, 1)
    direct = outputs.compute(task, model)
    lg: dict = {}
    Stages(task, Store(tmp_path)).evaluator.measure(model, ["acc_retain", "acc_forget", "acc_test", "acc_val"],
                                                    cache=lg)
    calls = []
    monkeypatch.setattr(metrics, "logits", lambda *a, **k: calls.append(1) or pytest.fail("forwarded"))
    again = outputs.compute(task, model, logits=lg)
    assert not calls and set(lg) >= {"retain", "forget", "test", "val"}
    for k in ("phi", "pred"):
        assert torch.equal(direct[k], again[k])


def test_equal_weights_share_one_artifact_and_a_diverged_model_stores_none(host, tmp_path):
    task = _task(host)
    stages = Stages(task, Store(tmp_path))
    state = _model(task, 2).state_dict()
    first, _ = stages.outputs_for(state)
    assert stages.outputs_for({k: v.clone() for k, v in state.items()})[0] == first  # keyed by content
    assert stages.outputs_for(_model(task, 3).state_dict())[0] != first
    bad = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v) for k, v in state.items()}
    assert stages.outputs_for(bad) == (None, "the model's logits are not all finite")


def _fake_training(monkeypatch):
    """Original and Retrain are θ_init nudged by a seeded amount (distinct, deterministic, no training)."""
    import unlearnbench.stages as st

    def train_model(task, init, split, kind, device):
        g = torch.Generator().manual_seed(len(task.indices(split)))
        return {k: (v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
                for k, v in init.items()}

    monkeypatch.setattr(st, "train_model", train_model)


def test_a_run_record_references_its_outputs_and_the_metrics_follow_from_them(host, tmp_path, monkeypatch):
    """run.json's ``outputs`` names the store keys of the original's, Retrain's and the unlearned model's
    outputs (and the labels): a few hundred bytes, whatever the data size. From those arrays alone the
    record's accuracies come back, and KLOM is computed (Retrain's run: KLOM 0 against itself)."""
    _fake_training(monkeypatch)
    store = Store(tmp_path / "store")
    res = resolve(host, scenario="digits-10pct", method="retrain")
    rec = run_trial(res, 0, store=store, runs_dir=tmp_path / "runs", data_root=None)
    on_disk = json.loads((tmp_path / "runs" / "digits-10pct" / "retrain" / "seed-0" / "run.json").read_text())
    out = on_disk["outputs"]
    assert out == rec["outputs"] and out["version"] == outputs.OUTPUTS_VERSION and "missing" not in out
    assert len(json.dumps(out)) < 500
    assert out["unlearned"] == out["retrain"] != out["original"]  # Retrain's weights: the same artifact
    man = store.get_json("manifest", on_disk["manifest_hash"])
    y = store.get(outputs.LABELS_KIND, out["labels"], on_disk["manifest_hash"])[0]["y"].numpy()
    for kind, section in (("unlearned", "metrics"), ("original", "original"), ("retrain", "retrain")):
        for split in ("forget", "retain", "test", "val"):
            got = outputs.stack(store, [out[kind]], man, split)
            acc = outputs.accuracy(got["pred"], y[outputs.columns(man, split)])[0]
            assert acc == pytest.approx(on_disk[section][f"acc_{split}"], abs=1e-9), (kind, split)
    u = outputs.stack(store, [out["unlearned"]] * 4, man, "forget")["phi"]
    o = outputs.stack(store, [out["retrain"]] * 4, man, "forget")["phi"]
    n_o = outputs.stack(store, [out["original"]] * 4, man, "forget")["phi"]
    assert u.shape == (4, 125) and (klom.klom(u, o) == 0).all() and (klom.klom(n_o, o) > 0).any()


@pytest.mark.slow  # the λ sweep and the oracle rules' passes: about 8 s on the shared box
def test_each_selection_also_rule_model_has_its_outputs(host, tmp_path, monkeypatch):
    """A selecting method's record names the outputs of every ``selection.also`` rule's model too."""
    import unlearnbench.stages as st

    _fake_training(monkeypatch)

    def train_member(task, theta0, recipe, seed, keep, device, desc, linear=False):
        g = torch.Generator().manual_seed(seed % (1 << 31))
        return {k: theta0[k] + 0.1 * torch.randn(theta0[k].shape, generator=g) for k in keep}

    monkeypatch.setattr(st, "train_member", train_member)
    store = Store(tmp_path / "store")
    res = resolve(host, scenario="digits-10pct", method="task-arithmetic", overrides=["pool.size=2", "selection.grid=unit"])
    rec = run_trial(res, 0, store=store, runs_dir=tmp_path / "runs", data_root=None)
    by = rec["outputs"]["by_rule"]
    assert set(by) == set(rec["by_rule"]) == {"oracle_avg_gap", "oracle_split_test"}
    for name, key in by.items():
        assert store.has(outputs.KIND, key)
        assert store.get(outputs.KIND, key, rec["manifest_hash"])[1]["spec"]["weights"] == rec["by_rule"][name]["weights_digest"]
    assert rec["outputs"]["unlearned"] and store.has(outputs.KIND, rec["outputs"]["unlearned"])
