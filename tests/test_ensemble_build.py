"""The ensembles of PROTOCOL §8.7.0 built through the executor (issue 18 acceptance 2), their board table
and claims question (acceptance 4-5). digits-10pct with its recipe cut to 1 epoch and tiny ensembles
(N = 3, K×M = 2×1), so every model trains in a fraction of a second."""
from __future__ import annotations

import json
import sys

import cloudpickle
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from unlearnbench.cli import main
from unlearnbench.config import resolve
from unlearnbench.ensemble import build, members, outputs
from unlearnbench.executor import Job, LocalExecutor, ProcessExecutor
from unlearnbench.report.ensemble import claims_section, ensemble_section, load_results
from unlearnbench.runner import build_task, run_trial
from unlearnbench.seeding import stream_seed
from unlearnbench.store import Store

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SCEN = "digits-10pct"
TINY = ["--challenge-n", "3", "--klom-n", "3", "--lira-k", "2", "--lira-m", "1"]
FT = ["method.epochs=1"]  # finetune with its §7.3 v2 search (on by default on digits): the record chose (lr, epoch)


@pytest.fixture
def fast(monkeypatch):
    """Every model of the scenario (original, Retrain, ensemble members) trains 1 epoch instead of 60."""
    from unlearnbench.scenarios.digits import Digits

    monkeypatch.setattr(Digits, "recipe", Digits.recipe.with_(epochs=1))


def _record(host, store, runs, method="finetune", over=FT):
    """The trial-0 record an ensemble replays, and its run folder (a variant's: method.epochs=1)."""
    res = resolve(host, scenario=SCEN, method=method, overrides=list(over))
    return run_trial(res, 0, store=store, runs_dir=runs, data_root=None), res.run_name


def _members(store, key):
    return store.get_json(build.ENSEMBLE_KIND, key)["members"]


def _spec(store, key):
    return store.get(outputs.KIND, key, None)[1]["spec"]


@pytest.mark.slow  # a §7.3 search record, then every ensemble kind and metric: ~50 s on the shared 2-core box
def test_members_are_seeded_as_protocol_says_replay_the_record_and_resume(host, tmp_path, fast, monkeypatch):
    store, runs = Store(tmp_path / "store"), tmp_path / "runs"
    rec, name = _record(host, store, runs)
    assert rec["selection"]["params"]["search"] == "v2" and rec["info"]["epoch"] is not None

    import unlearnbench.context as context

    monkeypatch.setattr(context, "search", lambda *a, **k: pytest.fail("an ensemble run searched"))
    monkeypatch.setattr(context, "sweep", lambda *a, **k: pytest.fail("an ensemble run swept λ"))
    out = CliRunner().invoke(main, ["ensemble", "-s", SCEN, "--methods", name, *TINY, "--store",
                                    str(store.root), "--runs-dir", str(runs), "-q"])
    assert out.exit_code == 0, out.output
    doc = json.loads((runs / SCEN / name / "ensemble.json").read_text())
    man = doc["ensembles"]
    orig, oracle, indep = (_members(store, man[r]) for r in ("originals", "oracles", "independent"))
    # O_0 and R_0 are the trial's own original and Retrain (their cached outputs), reused
    assert orig[0] == rec["outputs"]["original"] and oracle[0] == rec["outputs"]["retrain"]
    assert len(orig) == 3 and len(oracle) == len(indep) == 3
    assert len(set(orig) | set(oracle) | set(indep)) == 9  # disjoint members
    for role, keys in (("original", orig[1:]), ("oracle", oracle[1:]), ("independent", indep)):
        for key in keys:
            spec = _spec(store, key)
            i = spec["id"]
            assert spec["role"] == role and spec["init_seed"] == stream_seed(0, "ensemble", role, i, "init")
            assert spec["order_seed"] == stream_seed(0, "ensemble", role, i, "order")
    assert [_spec(store, k)["id"] for k in indep] == [0, 1, 2]  # R′ shares no member with the trial
    # runs: KLOM's run i from O_i with run seed i; the challenge's runs from O_0 with run seeds 0..N-1
    klom_runs = [_spec(store, k) for k in _members(store, man["klom_runs"])]
    ch_runs = [_spec(store, k) for k in _members(store, man["challenge_runs"])]
    assert [(s["original"], s["run"]) for s in klom_runs] == [(orig[i], i) for i in range(3)]
    assert [(s["original"], s["run"]) for s in ch_runs] == [(orig[0], r) for r in range(3)]
    assert _members(store, man["klom_runs"])[0] == _members(store, man["challenge_runs"])[0]  # run (O_0, 0) shared
    # the replay is the record's recipe: run 0 from O_0 has every seed of the trial, so it is the record's model
    assert doc["replay"]["chosen"] == rec["selection"]["params"]["chosen"]
    assert doc["replay_check"]["same"] is True
    # runs r ≠ 0 are other models (fresh run seeds)
    phis = [outputs.load(store, k)["phi"] for k in _members(store, man["challenge_runs"])]
    assert not np.array_equal(phis[0], phis[1])
    # every value states its N / K×M and resolution, and the manifest keys it read
    m = doc["metrics"]
    assert m["klom"]["N"] == 3 and set(m["klom"]["floor"]) == {"retain", "forget", "test"}
    assert m["challenge"]["N"] == 3 and m["challenge"]["epsilon_max"] == 1 and "ceiling" in m["challenge"]
    assert (m["ulira"]["K"], m["ulira"]["M"]) == (2, 1) and m["klom"]["ensembles"]["runs"] == man["klom_runs"]
    ref = json.loads((runs / SCEN / "ensemble.json").read_text())["rows"]
    assert ref["No unlearning"]["challenge"]["fq"] == 0.0  # N copies of O_0 (§8.7.0)

    # resumed: every member is in the store, so nothing trains and the result is the same
    monkeypatch.setattr(members, "train_model_member", lambda *a, **k: pytest.fail("trained a stored member"))
    monkeypatch.setattr(members, "run_members", lambda *a, **k: pytest.fail("ran a stored member"))
    again = build.build_and_score(host, SCEN, [name], store=store, runs_dir=runs, echo=lambda s: None,
                                  sizes=build.Sizes(challenge=3, klom=3, lira_k=2, lira_m=1))
    assert again[name]["ensembles"] == doc["ensembles"]
    assert again[name]["metrics"]["klom"]["splits"] == doc["metrics"]["klom"]["splits"]


GA = ["method.lr_search=off", "method.epochs=1", "selection.also=none"]  # no search: the cheapest record


def test_klom_members_reuse_o0_r0_take_disjoint_seeds_and_a_rebuild_trains_nothing(host, tmp_path, fast,
                                                                                    monkeypatch):
    store, runs = Store(tmp_path / "store"), tmp_path / "runs"
    rec, name = _record(host, store, runs, "gradient-ascent", GA)
    sizes = build.Sizes(challenge=0, klom=3, lira_k=0, lira_m=0)
    doc = build.build_and_score(host, SCEN, [name], store=store, runs_dir=runs, sizes=sizes, echo=lambda s: None)[name]
    man = doc["ensembles"]
    orig, oracle, indep = (_members(store, man[r]) for r in ("originals", "oracles", "independent"))
    assert orig[0] == rec["outputs"]["original"] and oracle[0] == rec["outputs"]["retrain"]
    assert len(set(orig) | set(oracle) | set(indep)) == 9
    seeds = [_spec(store, k)["init_seed"] for k in orig[1:] + oracle[1:] + indep]
    assert len(set(seeds)) == 7 and _spec(store, indep[0])["init_seed"] == stream_seed(0, "ensemble", "independent",
                                                                                      0, "init")
    runs_ = [_spec(store, k) for k in _members(store, man["klom_runs"])]
    assert [(r["original"], r["run"]) for r in runs_] == [(orig[i], i) for i in range(3)]
    assert doc["replay_check"]["same"] is True  # run (O_0, 0) has the trial's seeds: the record's model
    assert doc["metrics"]["klom"]["N"] == 3 and "forget" in doc["metrics"]["klom"]["floor"]
    monkeypatch.setattr(members, "train_model_member", lambda *a, **k: pytest.fail("trained a stored member"))
    monkeypatch.setattr(members, "run_members", lambda *a, **k: pytest.fail("ran a stored member"))
    again = build.build_and_score(host, SCEN, [name], store=store, runs_dir=runs, sizes=sizes, echo=lambda s: None)
    assert again[name]["ensembles"] == man


def test_a_replay_builds_the_recorded_setting_once_at_its_epoch_and_sweeps_nothing():
    from unlearnbench.ensemble.replay import Replay

    built = []

    def build_(c):
        built.append(c)
        return [{"w": torch.tensor(float(t))} for t in range(1, 4)]  # the states after epochs 1..3

    state, sel = Replay("r", chosen={"lr": 0.1, "epoch": 2}).search(build_, lambda: {"w": torch.tensor(0.0)})
    assert built == [{"lr": 0.1}] and float(state["w"]) == 2.0 and sel.params["chosen"] == {"lr": 0.1, "epoch": 2}
    state, _ = Replay("r", chosen={"lr": 0.0, "epoch": 0}).search(build_, lambda: {"w": torch.tensor(0.0)})
    assert float(state["w"]) == 0.0 and len(built) == 1  # the null point: θ_0, nothing built
    assert Replay("r", lam=0.35).selection().lam == 0.35 and Replay("r", lam=0.35).selection().evals == 0
    with pytest.raises(Exception, match="records no λ"):
        Replay("r").selection()


def test_an_interrupted_build_keeps_what_it_finished(host, tmp_path, fast, monkeypatch):
    store, runs = Store(tmp_path / "store"), tmp_path / "runs"
    _, name = _record(host, store, runs, "gradient-ascent", GA)
    real = members.train_model_member
    calls = []

    def flaky(task, rows, init_seed, order_seed, keep, device, desc):
        calls.append(desc)
        if desc == "independent 1":
            raise RuntimeError("killed")
        return real(task, rows, init_seed, order_seed, keep, device, desc)

    monkeypatch.setattr(members, "train_model_member", flaky)
    sizes = build.Sizes(challenge=0, klom=2, lira_k=0, lira_m=0)
    with pytest.raises(Exception, match="failed twice"):
        build.build_and_score(host, SCEN, [name], store=store, runs_dir=runs, sizes=sizes,
                              echo=lambda s: None)
    calls.clear()
    monkeypatch.setattr(members, "train_model_member", real)
    seen = []
    monkeypatch.setattr(members, "train_model_member", lambda *a: seen.append(a[-1]) or real(*a))
    build.build_and_score(host, SCEN, [name], store=store, runs_dir=runs, sizes=sizes,
                          echo=lambda s: None)
    assert seen == ["independent 1"]  # only the member that failed is trained again


@pytest.mark.slow  # a spawned worker imports torch and rebuilds the task: ~35 s on the shared 2-core box
def test_the_processes_executor_gives_the_members_serial_gives(host, tmp_path, fast):
    store, runs = Store(tmp_path / "store"), tmp_path / "runs"
    rec, name = _record(host, store, runs, "gradient-ascent", GA)
    s = build.subject(host, runs / SCEN / name / "seed-0" / "run.json", rec, [])
    task = build_task(s.res, 0, None)
    ref = build.TaskRef(task, s.res, None)
    init, order = members.model_seeds(0, "original", 1)
    theta0 = store.get("original", rec["artifacts"]["original"], task.manifest_hash)[0]
    jobs = [Job("m", build._model_job, (ref, task.indices("train"), init, order, False, "cpu", "original 1")),
            Job("r", build._run_job, (ref, [(s.name, s.res, s.replay)], theta0, "o", 1, "cpu", None))]
    serial = LocalExecutor().run(jobs)
    ex = ProcessExecutor(workers=1, threads=1)
    try:
        remote = ex.run(jobs)
    finally:
        ex.close()
    assert all(o.ok for o in serial + remote), [o.error for o in serial + remote]
    for a, b in ((serial[0].value["outputs"], remote[0].value["outputs"]),
                 (serial[1].value[s.name]["outputs"], remote[1].value[s.name]["outputs"])):
        assert torch.equal(a["phi"], b["phi"]) and torch.equal(a["pred"], b["pred"])
    assert serial[1].value[s.name]["digest"] == remote[1].value[s.name]["digest"]


def _result(name, p95_f, auc, floor_f=1.2):
    return {"scenario": SCEN, "sizes": {"challenge": 64, "klom": 64, "lira_k": 16, "lira_m": 10, "variance": "per_example"},
            "metrics": {"klom": {"N": 64, "splits": {s: {"p95": v} for s, v in (("retain", 1.3), ("forget", p95_f),
                                                                             ("test", 1.25))},
                                 "floor": {"retain": 1.23, "forget": floor_f, "test": 1.24},
                                 "ensembles": {"runs": "abcdef0123456789"}},
                        "challenge": {"N": 64, "epsilon_max": 5, "fq": 0.1, "ra_ratio": 1.0, "ta_ratio": 0.99,
                                      "score": 0.099, "ceiling": 0.189},
                        "ulira": {"K": 16, "M": 10, "auc": auc, "auc_dev": abs(auc - 0.5), "tpr_at_0.01_fpr": 0.02,
                                  "n_pos": 1000, "n_neg": 10000}}}


def test_the_board_table_states_n_and_resolution_and_shows_missing_methods(tmp_path):
    runs = tmp_path / "runs"
    (runs / SCEN / "negmerge").mkdir(parents=True)
    (runs / SCEN / "negmerge" / "ensemble.json").write_text(json.dumps(_result("negmerge", 3.9, 0.6)))
    ref = _result("ref", 0, 0.5)["metrics"]
    (runs / SCEN / "ensemble.json").write_text(json.dumps({"scenario": SCEN, "sizes": {}, "rows": {
        "No unlearning": {**ref, "klom": {**ref["klom"], "splits": {"forget": {"p95": 4.25}}}},
        "Retrain (independent)": ref}}))
    res = load_results(runs)
    md = ensemble_section(SCEN, res[SCEN], ["finetune", "negmerge", "retrain"])
    lines = md.splitlines()
    row = next(line for line in lines if line.startswith("| negmerge |"))
    assert "| 64 |" in row and "64 / 5" in row and "16×10" in row and "3.90" in row
    assert next(line for line in lines if line.startswith("| finetune |")).split("|")[2].strip() == "missing"
    assert not any(line.startswith("| retrain |") for line in lines)  # its row is Retrain (independent)
    assert "floor at N = 64" in md and "ε_max = 5" in md and "D_f 1.20" in md
    assert lines.index(next(x for x in lines if x.startswith("| No unlearning"))) < lines.index(row)
    table = [x.replace("\\|", "") for x in lines if x.startswith("|")]  # header, rule, rows: one width
    assert len({x.count("|") for x in table}) == 1, {x.split("|")[1]: x.count("|") for x in table}
    from unlearnbench.report.page import render_html

    page = render_html({}, {}, extra={SCEN: md})  # the page shows the table the .md board shows
    assert "<h3>Ensemble metrics (PROTOCOL §8.7)</h3>" not in page  # only for a scenario on the page
    page = render_html({SCEN: []}, {}, extra={SCEN: md})
    assert "<h3>Ensemble metrics (PROTOCOL §8.7)</h3>" in page and "<th>|AUC−0.5|</th>" in page
    html_table = page[page.index("<h3>Ensemble metrics"):]
    assert html_table.count("<th>") == len(table[0].strip("|").split("|"))
    assert '<td class="num">finetune</td><td class="num">missing</td>' in html_table
    claims = claims_section(res)
    neg = next(line for line in claims.splitlines() if line.startswith("| negmerge |"))
    assert neg.count("**yes**") == 2  # 3.9 > floor 1.2 on D_f; |0.6 − 0.5| ≫ 3 SE
    res[SCEN]["methods"]["negmerge"] = _result("negmerge", 1.1, 0.5005)
    neg = next(line for line in claims_section(res).splitlines() if line.startswith("| negmerge |"))
    assert "**yes**" not in neg and "PROTOCOL §8.7.1" in claims_section(res)


def test_the_board_says_when_ensembles_come_from_another_machine_than_each_other_or_the_records():
    """Weights depend on the CPU's kernels as well as the seeds: an ensemble built on another machine than its
    record cannot replay the record's own model (replay check), and two machines' ensembles share no Retrain."""
    amd = {"cpu": "AMD EPYC", "torch": "2.14.1"}
    xeon = {"cpu": "Intel Xeon", "torch": "2.14.1"}
    ref = {"scenario": SCEN, "sizes": {}, "provenance": amd, "rows": {"Retrain (independent)": _result("r", 0, 0.5)["metrics"]}}
    same = {**_result("negmerge", 3.9, 0.6), "provenance": amd, "replay_check": {"same": True}}
    res = {"reference": ref, "methods": {"negmerge": same}}
    md = ensemble_section(SCEN, res, ["negmerge"])
    assert "Not like for like" not in md and "†" not in md
    res["methods"]["finetune"] = {**_result("finetune", 2.0, 0.55), "provenance": xeon, "replay_check": {"same": False}}
    md = ensemble_section(SCEN, res, ["negmerge", "finetune"])
    lines = md.splitlines()
    assert "built on 2 machines" in md and "1 from CPU Intel Xeon, torch 2.14.1 (finetune)" in md
    assert any(x.startswith("| finetune † |") for x in lines) and any(x.startswith("| negmerge |") for x in lines)
    assert "**†**" in md and "(CPU Intel Xeon, torch 2.14.1)" in md
    assert "Built on CPU Intel Xeon, torch 2.14.1, not the machine of the accuracy records" in claims_section({SCEN: res})
    res["methods"].pop("finetune")
    assert "Built on" not in claims_section({SCEN: res})


def test_eval_ensembles_is_an_option_of_how_a_run_is_evaluated_not_of_what_it_computes(host):
    a = resolve(host, scenario=SCEN, method="negmerge")
    b = resolve(host, scenario=SCEN, method="negmerge", overrides=["eval.ensembles=on", "eval.preset=smoke"])
    assert str(b.cfg.eval.ensembles) == "on" and (a.hash, a.run_name) == (b.hash, b.run_name)
    assert build.sizes_for(b.scenario, "auto") == build.PRESETS["faithful"]
    assert build.sizes_for(b.scenario, "smoke", klom=5).klom == 5


@pytest.mark.slow  # 34 one-epoch models, ~5 s: the fast suite's budget
def test_ulira_measure_retrain_trains_the_k_m_retrains_and_measures_the_retrain_row(host, tmp_path, fast):
    """``--ulira-measure-retrain`` (§8.7.3): Retrain scored as a method, from K·M models trained from scratch
    on H_k ∖ D_f^{k,m} with `lira`-stream seeds, instead of the row's stated expectation."""
    from unlearnbench.seeding import sha256_hex

    store, runs = Store(tmp_path / "store"), tmp_path / "runs"
    off = build.Sizes(challenge=0, klom=0, lira_k=8, lira_m=3)  # IN ≈ K·M·ρ/2 ≈ 1 per example
    build.build_and_score(host, SCEN, [], store=store, runs_dir=runs, echo=lambda s: None, sizes=off)
    doc = json.loads((runs / SCEN / "ensemble.json").read_text())
    assert doc["rows"]["Retrain (independent)"]["ulira"]["expected"] is True
    assert "retrains" not in store.get_json(build.ENSEMBLE_KIND, doc["ensembles"]["lira"])  # off: nothing more trained
    assert "not measured" in ensemble_section(SCEN, load_results(runs)[SCEN], [])
    out = CliRunner().invoke(main, ["ensemble", "-s", SCEN, "--challenge-n", "0", "--klom-n", "0", "--lira-k", "8",
                                    "--lira-m", "3", "--ulira-measure-retrain", "--store", str(store.root),
                                    "--runs-dir", str(runs), "-q"])
    assert out.exit_code == 0, out.output
    doc = json.loads((runs / SCEN / "ensemble.json").read_text())
    u = doc["rows"]["Retrain (independent)"]["ulira"]
    assert u["measured"] is True and "expected" not in u and (u["K"], u["M"]) == (8, 3) and 0 <= u["auc"] <= 1
    assert u["n_pos"] > 0 and u["n_neg"] > 0
    lira = store.get_json(build.ENSEMBLE_KIND, doc["ensembles"]["lira"])
    keys = [key for row in lira["retrains"] for key in row]
    assert len(set(keys)) == 24
    for k, row in enumerate(lira["retrains"]):
        for m, key in enumerate(row):
            spec = _spec(store, key)
            assert spec["role"] == "lira-retrain" and spec["id"] == [k, m]
            assert spec["init_seed"] == stream_seed(0, "lira", "retrain", k, m, "init")
            assert spec["rows"] == sha256_hex(sorted(set(lira["halves"][k]) - set(lira["forget"][k][m])))
    md = ensemble_section(SCEN, load_results(runs)[SCEN], [])
    row = next(x for x in md.splitlines() if x.startswith("| Retrain (independent)"))
    assert "(expected)" not in row and "measured from the 8×3 retrains" in md
    # a later call without the flag trains nothing and keeps the measured row (the store holds the retrains)
    before = sorted(p.name for p in store.root.rglob("*"))
    build.build_and_score(host, SCEN, [], store=store, runs_dir=runs, echo=lambda s: None, sizes=off)
    assert json.loads((runs / SCEN / "ensemble.json").read_text())["rows"]["Retrain (independent)"]["ulira"] == u
    assert sorted(p.name for p in store.root.rglob("*")) == before
    with pytest.raises(Exception, match="needs U-LiRA on"):
        build.Sizes(challenge=3, klom=3, lira_k=0, lira_m=0, lira_retrain=True).check()
