"""End to end on digits: run records, store reuse across methods, interruption, oracle tagging,
and the recipe character check (PROTOCOL §2.1). Split enforcement is tests/test_context.py's."""
from __future__ import annotations

import json

import pytest

from unlearnbench.config import resolve
from unlearnbench.seeding import sha256_hex
from unlearnbench.runner import run_trial

POOL6 = "pool.size=6"  # 6 members (draw 0 of the random subsets, PROTOCOL §9.5): keeps the suite fast


def run(host, store, tmp_path, method="negmerge", scenario="digits-10pct", over=(), trial=0):
    res = resolve(host, method=method, scenario=scenario, overrides=[POOL6, *over])
    return run_trial(res, trial, store=store, runs_dir=tmp_path / "runs", data_root=None)


def test_negmerge_record(host, session_store, tmp_path):
    rec = run(host, session_store, tmp_path)
    path = tmp_path / "runs" / "digits-10pct" / f"negmerge@{sha256_hex(['pool.size=6'])[:8]}" / "seed-0" / "run.json"
    assert rec["_path"] == str(path)  # a variant of the default config has its own folder
    on_disk = json.loads(path.read_text())
    assert on_disk["config_hash"] == rec["config_hash"] and on_disk["manifest_hash"]
    assert on_disk["config"]["method"]["name"] == "negmerge"
    for k in ("acc_retain", "acc_forget", "acc_test", "acc_val", "mia"):
        assert 0.0 <= on_disk["metrics"][k] <= 100.0
    assert on_disk["used_splits"] == "forget+val"
    sel = on_disk["selection"]
    assert sel["rule"] == "val_matched" and not sel["oracle"] and len(sel["curve"]) == 41
    assert on_disk["lambda"] == sel["lambda"] and 0.0 <= on_disk["lambda"] <= 2.0
    own = {"lambda", "acc_forget", "acc_val", "acc_val_retain"}
    # the curve also holds the oracle rules' metrics (selection.also=auto), which val_matched never sees
    # (tests/test_rules.py): its λ* is the one it chooses alone (tests/test_also.py)
    assert set(sel["curve"][0]) == own | {"acc_retain_floor", "acc_test", "mia_sel", "acc_test_a", "mia_sel_a"}
    assert set(on_disk["by_rule"]) == {"oracle_avg_gap", "oracle_split_test"}
    assert all(c["acc_val"] == c["acc_val_retain"] for c in sel["curve"])  # one split, evaluated once
    assert 0.0 <= on_disk["sparsity"]["u_all"] <= 100.0
    assert set(on_disk["sparsity"]["by_component"]) == {"conv", "fc"} and on_disk["sparsity"]["by_depth"]
    cost = on_disk["info"]["merge_cost"]  # PROTOCOL §8.6
    assert cost["n"] == 6 and cost["merge_compute_s"] > 0 and cost["resident_models"] < 6  # streamed
    assert on_disk["protocol"] == 2  # PROTOCOL §11
    pool = on_disk["info"]["pool"]  # §9.5 v2: draw 0 of the random 6-member subsets, named in the record
    assert pool["n"] == 6 and pool["of"] == 27 and pool["subset"] == "0" and pool["augment"] == "pool"
    assert len(pool["members"]) == 6 and pool["members"] == sorted(pool["members"])
    assert pool["members"] != list(range(6))  # not the v1 prefix
    sizes = on_disk["split_sizes"]
    assert sizes["forget"] == 125 and sizes["forget"] + sizes["retain"] == sizes["train"]
    assert on_disk["timings"]["merge_wall_s"] >= 0
    assert on_disk["gap"]["avg_gap"] >= 0 and set(on_disk["gap"]["components"]) == {
        "acc_retain", "acc_forget", "acc_test", "mia"}
    prov = on_disk["provenance"]
    assert prov["torch"] and prov["device"] == "cpu" and prov["threads"] >= 1
    for k in ("original", "retrain", "pool_n", "unlearn_s", "eval_s", "select_s"):
        assert k in on_disk["timings"] or k in on_disk["artifacts"], k
    assert on_disk["artifacts"]["original"] and on_disk["artifacts"]["retrain"]
    shas = on_disk["weights_digest"]  # the weights by content, for the leaderboard's like-for-like check
    assert set(shas) == {"init", "original", "retrain", "unlearned"} and len(set(shas.values())) == 4
    assert all(len(v) == 64 for v in shas.values())
    from unlearnbench.store import Store, tensor_digest

    stored, _ = Store(session_store.root).get("original", on_disk["artifacts"]["original"], None)
    assert shas["original"] == tensor_digest(stored)


def test_second_method_trains_nothing(host, session_store, tmp_path):
    run(host, session_store, tmp_path)  # negmerge: the pool and models exist now
    rec = run(host, session_store, tmp_path, method="task-arithmetic")
    assert rec["trained_now"] == [] and rec["timings"]["pool_trained"] == 0
    assert rec["timings"]["select_evals"] == 6 * 41  # n·|Λ| (§4.1)
    assert rec["info"]["best_member"]["index"] in rec["info"]["pool"]["members"]  # its index in canonical order


def test_retrain_row_is_the_oracle(host, session_store, tmp_path):
    rec = run(host, session_store, tmp_path, method="retrain")
    assert rec["gap"]["avg_gap"] == 0.0 and rec["used_splits"] == "retain"
    assert rec["metrics"] == rec["retrain"]
    assert rec["weights_digest"]["unlearned"] == rec["weights_digest"]["retrain"]  # the oracle is Retrain itself


def test_oracle_rule_is_tagged(host, session_store, tmp_path):
    rec = run(host, session_store, tmp_path, over=["selection=oracle_avg_gap"])
    assert rec["selection"]["oracle"] and rec["oracle"] and rec["selection_rule"] == "oracle_avg_gap"
    assert "mia_sel" in rec["selection"]["curve"][0]  # the selection-time MIA subsample (§5(d))


@pytest.mark.slow  # trains a fresh store (~25 s): run in CI's slow step
def test_pool_interruption_keeps_finished_members(host, tmp_path, monkeypatch):
    from unlearnbench.store import Store

    store = Store(tmp_path / "store")
    import unlearnbench.training as training

    orig = training.train
    count = {"pool": 0}

    def flaky(model, x, y, recipe, gen, **kw):
        if kw.get("desc", "").startswith("member"):
            count["pool"] += 1
            if count["pool"] == 4:
                raise KeyboardInterrupt  # Ctrl-C during the 4th member
        return orig(model, x, y, recipe, gen, **kw)

    monkeypatch.setattr(training, "train", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(host, store, tmp_path)
    assert len(list((tmp_path / "store" / "pool").rglob("*.json"))) == 3  # three finished members kept
    monkeypatch.setattr(training, "train", orig)
    rec = run(host, store, tmp_path)
    assert rec["timings"]["pool_trained"] == 3  # only the 3 missing of 6 are trained


def test_class_wise_run(host, session_store, tmp_path):
    rec = run(host, session_store, tmp_path, scenario="digits-class")
    assert rec["retrain"]["acc_forget"] == 0.0  # a model that never saw class 0 never predicts it
    assert "acc_test_forget_class" in rec["metrics"]
    assert rec["metrics"]["acc_forget"] < rec["original"]["acc_forget"]


def test_digits_recipe_character(host, session_store):
    """PROTOCOL §2.1 character requirement on trial 0 (Fashion-MNIST: benchmarks/character_check.sh);
    the board's check from records weighs Acc D_r and Acc D_f into exactly the measured Acc D_train."""
    from unlearnbench.character import check_recipe, train_accuracy

    res = resolve(host, scenario="digits-10pct", method="retrain")
    out = check_recipe(res.scenario, res.cfg.scenario, 0, session_store, None)
    assert out["ok"], out["checks"]
    sizes = res.scenario.build_task(res.cfg.scenario, 0, None).manifest["sizes"]
    assert train_accuracy(out["original"], sizes) == pytest.approx(out["original"]["acc_train"], abs=1e-9)


def test_original_and_retrain_start_from_the_same_stored_init(host, session_store, tmp_path):
    """PROTOCOL §2.1: θ_init is drawn once per trial, stored, and loaded by both models."""
    rec = run(host, session_store, tmp_path, method="retrain")
    specs = {}
    for kind in ("original", "retrain"):
        side = session_store._paths(kind, rec["artifacts"][kind])[1]
        specs[kind] = json.loads(side.read_text())["spec"]
    assert specs["original"]["init"] == specs["retrain"]["init"] == rec["artifacts"]["init"]
    assert specs["original"]["recipe"] == specs["retrain"]["recipe"]  # Retrain uses the original's recipe
    assert (specs["original"]["data"], specs["retrain"]["data"]) == ("train", "retain")
    init, _ = session_store.get("init", rec["artifacts"]["init"], rec["manifest_hash"])
    import torch

    from unlearnbench.models import build_model
    from unlearnbench.seeding import stream_seed

    torch.manual_seed(stream_seed(0, "init"))
    fresh = build_model("cnn-s", 10).state_dict()
    assert all(torch.equal(init[k], fresh[k]) for k in fresh)  # the `init` stream, bit for bit


def test_variants_get_their_own_records(host, session_store, tmp_path):
    """A run with non-default options never overwrites the default run's record."""
    a = run(host, session_store, tmp_path)
    b = run(host, session_store, tmp_path, over=["pool.size=4"])
    assert a["variant"] == ["pool.size=6"] and b["variant"] == ["pool.size=4"]
    assert a["_path"] != b["_path"] and "negmerge@" in b["_path"]
    res = resolve(host, overrides=["device=cpu", "threads=1", "seeds=[0]"])
    assert res.variant == [] and res.run_name == "negmerge"  # how a run executes is not a variant


def test_cli_prints_original_retrain_and_mean_std_over_seeds(session_store, tmp_path):
    from click.testing import CliRunner

    from unlearnbench.cli import main

    r = CliRunner().invoke(main, ["run", "-q", "-m", "negmerge", "--seeds", "0,1", "-o", POOL6, "--store",
                                  str(session_store.root), "--runs-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    head = next(x for x in lines if x.startswith(" ") and "Acc Dr" in x)
    assert "Avg. Gap" in head and "MIA" in head
    table = lines[lines.index(head) + 2:]  # below the dashes
    for label in ("Original", "Retrain", "negmerge"):
        row = next(x for x in table if x.startswith(label + " "))
        assert row.count("±") >= 5, row  # two trials: mean ± std in every metric column


def test_summary_row_shows_the_variant():
    from unlearnbench.report import summarise

    m = {"acc_retain": 99.0, "acc_forget": 90.0, "acc_test": 95.0, "acc_val": 95.0, "mia": 5.0}
    recs = [{"method": "salun", "trial": t, "metrics": m, "original": m, "retrain": m, "lambda": None,
             "info": {"variant": "mask_mode=leaky"}} for t in (0, 1)]
    assert summarise(recs)[-1][""] == "salun (mask_mode=leaky)"


def test_diagnostic_sweep_reads_test_after_selection_and_stays_off_leaderboards(host, session_store, tmp_path):
    from unlearnbench.report import aggregate

    plain = run(host, session_store, tmp_path)
    diag = run(host, session_store, tmp_path, over=["selection.diagnostic=true"])
    # the pass runs in the harness after the method returned: λ*, the curve it was chosen on, the
    # weights and every reported number are the normal run's
    assert diag["lambda"] == plain["lambda"] and diag["metrics"] == plain["metrics"]
    assert diag["weights_digest"] == plain["weights_digest"]
    assert [{k: v for k, v in p.items() if k != "diagnostic"} for p in diag["selection"]["curve"]] == \
        plain["selection"]["curve"]
    keys = ("acc_test", "acc_retain", "acc_forget", "mia")
    assert all(set(p["diagnostic"]) == {*keys, "avg_gap"} for p in diag["selection"]["curve"])
    at_star = diag["selection"]["curve"][[p["lambda"] for p in diag["selection"]["curve"]].index(diag["lambda"])]
    assert {k: at_star["diagnostic"][k] for k in keys} == {k: plain["metrics"][k] for k in keys}  # θ_0 − λ*τ
    assert at_star["diagnostic"]["avg_gap"] == pytest.approx(plain["gap"]["avg_gap"])  # Avg. Gap at every λ
    assert diag["info"]["diagnostic"] and "diagnostic" not in plain["info"]
    assert "diagnostic" not in plain["selection"]["curve"][0]
    for r in (plain, diag):
        r["_file"] = r["_path"]
    labels = [row.label for row in aggregate([plain, diag])["digits-10pct"] if row.role == "measured" and not row.oracle]
    assert len(labels) == 1 and "diagnostic" not in labels[0]


@pytest.mark.slow  # trains a fresh store (~25 s): run in CI's slow step
def test_stage_times_survive_a_method_reading_the_stage(host, tmp_path):
    """Retrain's own ctx.retrain() is a store read once the stage has trained; the record must
    keep the stage's training time (it once kept the read's 0.0001 s)."""
    from unlearnbench.store import Store

    rec = run(host, Store(tmp_path / "store"), tmp_path, method="retrain")
    assert {"original", "retrain"} <= set(rec["trained_now"])
    t = rec["timings"]
    assert t["retrain_s"] > 0.05 and t["original_s"] > 0.05
    assert t["original_s"] + t["retrain_s"] <= t["total_s"]


def test_a_run_beside_records_of_another_original_warns_before_it_computes(host, session_store, tmp_path, capsys):
    """Another machine's kernels train the same store key to other weights: a run into a runs dir whose records of
    that trial started from another original says so up front (once per process per trial), not only the board."""
    from pathlib import Path

    rec = run(host, session_store, tmp_path, method="retrain")
    assert "like for like" not in capsys.readouterr().err
    doc = json.loads(Path(rec["_path"]).read_text())
    doc["weights_digest"]["original"], doc["provenance"]["cpu"] = "f" * 64, "Another CPU"
    other = tmp_path / "runs" / "digits-10pct" / "finetune" / "seed-0"
    other.mkdir(parents=True)
    (other / "run.json").write_text(json.dumps(doc))
    run(host, session_store, tmp_path, method="retrain")
    err = capsys.readouterr().err
    assert "digits-10pct trial 0" in err and "1 record(s)" in err and "CPU Another CPU" in err
    assert "not be like for like" in err and rec["weights_digest"]["original"][:12] in err
    run(host, session_store, tmp_path, method="retrain")
    assert "like for like" not in capsys.readouterr().err  # said once
