"""``unlearnbench evaluate``: the ensemble metrics of stored models from their cached outputs alone (issue 18
acceptance 3), on a small synthetic ensemble written straight into a store (nothing trained)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from helpers import rec
from unlearnbench.cli import main
from unlearnbench.ensemble import challenge, klom, outputs, ulira
from unlearnbench.ensemble.evaluate import evaluate
from unlearnbench.seeding import sha256_hex
from unlearnbench.store import Store

N, C = 8, 4  # models per ensemble, classes
SPLITS = {"train": list(range(40)), "forget": list(range(10)), "retain": list(range(10, 40)),
          "val": list(range(40, 50)), "test": list(range(50, 60))}


def _world(tmp_path):
    """A store with a 60-example manifest, its labels, and ensembles of cached outputs: R, R′ (same
    distribution), a method that under-forgets D_f, and one original copied N times."""
    store = Store(tmp_path / "store")
    man = {"splits": SPLITS}
    mh = sha256_hex(man)
    store.put_json("manifest", mh, man)
    g = np.random.default_rng(0)
    y = g.integers(0, C, 60)
    store.put_new(outputs.LABELS_KIND, outputs.labels_key(store, mh), {"y": torch.as_tensor(y)}, {"t": 1}, mh)
    level = g.normal(0, 2, 60)

    def model(shift_forget: float, tag: str) -> tuple[str, np.ndarray]:
        phi = (level + g.normal(0, 1, 60)).astype(np.float32)
        phi[:10] += shift_forget
        pred = np.where(g.random(60) < 0.8, y, (y + 1) % C).astype(np.int16)
        key = sha256_hex({"model": tag})
        store.put_new(outputs.KIND, key, {"phi": torch.as_tensor(phi), "pred": torch.as_tensor(pred)}, {"m": tag}, mh)
        return key, phi

    ens = {role: [model(shift, f"{role}{i}") for i in range(N)]
           for role, shift in (("oracle", 0.0), ("independent", 0.0), ("method", 2.0))}
    original = model(3.0, "original")
    ens["no_unlearning"] = [original] * N
    return store, mh, y, ens


def _keys(ens, role):
    return [k for k, _ in ens[role]]


def _phi(ens, role, cols):
    return np.stack([p[cols] for _, p in ens[role]]).astype(np.float64)


def test_evaluate_is_the_metric_functions_on_the_cached_arrays(tmp_path):
    store, mh, y, ens = _world(tmp_path)
    spec = {"manifest": mh, "oracle": _keys(ens, "oracle"), "independent": _keys(ens, "independent"),
            "rows": {"method": {"klom": _keys(ens, "method"), "challenge": _keys(ens, "method")},
                     "No unlearning": {"challenge": _keys(ens, "no_unlearning")}}}
    out = evaluate(store, spec)
    rows = out["rows"]
    assert set(rows) == {"method", "No unlearning", "Retrain (independent)"}
    f = np.arange(10)
    for row, role in (("method", "method"), ("Retrain (independent)", "independent")):
        k = rows[row]["klom"]["splits"]
        assert set(k) == {"retain", "forget", "test"}
        assert k["forget"]["p95"] == klom.summary(klom.klom(_phi(ens, role, f), _phi(ens, "oracle", f)))["p95"]
        c = rows[row]["challenge"]
        assert c["fq"] == challenge.forgetting_quality(_phi(ens, role, f), _phi(ens, "oracle", f))["fq"]
        assert c["epsilon_max"] == challenge.epsilon_max(N) and c["n_unlearned"] == N
        acc = {r: [100 * np.mean(outputs.load(store, kk)["pred"][SPLITS["retain"]] == y[SPLITS["retain"]])
                   for kk in _keys(ens, r)] for r in (role, "oracle")}
        assert c["ra_ratio"] == pytest.approx(np.mean(acc[role]) / np.mean(acc["oracle"]), rel=1e-12)
        assert c["score"] == pytest.approx(c["fq"] * c["ra_ratio"] * c["ta_ratio"])
    # N copies of one original: deterministic, so ε = 50 everywhere and FQ = 0 by construction (§8.7.0)
    assert rows["No unlearning"]["challenge"]["fq"] == 0.0
    # the method under-forgets D_f: a larger KLOM there than the floor row's
    assert rows["method"]["klom"]["splits"]["forget"]["p95"] > rows["Retrain (independent)"]["klom"]["splits"][
        "forget"]["p95"]
    assert evaluate(store, spec, options={"binning": "reference"})["options"]["binning"] == "reference"


def test_evaluate_computes_ulira_from_per_run_outputs_and_reads_run_records(tmp_path):
    store, mh, y, ens = _world(tmp_path)
    g = np.random.default_rng(1)
    halves = [sorted(g.choice(40, 20, replace=False).tolist()) for _ in range(4)]
    runs, keys = [], _keys(ens, "oracle") + _keys(ens, "independent")
    for r, key in enumerate(keys):
        k = r % 4
        runs.append({"half": k, "forget": sorted(g.choice(halves[k], 4, replace=False).tolist()), "outputs": key})
    # a row's member named by its run record: the record's outputs.unlearned
    (tmp_path / "run.json").write_text(json.dumps({**rec("negmerge", 0, {}), "outputs": {"unlearned": keys[0]}}))
    runs[0]["outputs"] = "run.json"
    spec = {"manifest": mh, "lira": {"method": {"halves": halves, "runs": runs}}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    got = evaluate(store, spec, base=tmp_path)["rows"]["method"]["ulira"]
    phi = np.stack([outputs.load(store, k)["phi"][:40] for k in keys])
    in_half = np.zeros((4, 40), dtype=bool)
    for k, h in enumerate(halves):
        in_half[k, h] = True
    forget = np.zeros((len(runs), 40), dtype=bool)
    for r, run in enumerate(runs):
        forget[r, run["forget"]] = True
    want = ulira.ulira(phi, np.arange(len(runs)) % 4, in_half, forget)
    assert got["auc"] == want["auc"] and got["K"] == 4 and got["M"] == 4
    # the CLI: a table by default, the same result as JSON, and a user error is one message, exit 2
    cli = CliRunner()
    table = cli.invoke(main, ["evaluate", str(tmp_path / "spec.json"), "--store", str(tmp_path / "store")])
    assert table.exit_code == 0 and "U-LiRA AUC" in table.output and "K×M=4×4" in table.output
    as_json = cli.invoke(main, ["evaluate", str(tmp_path / "spec.json"), "--store", str(tmp_path / "store"),
                                "--json", "-o", "variance=fixed"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["options"]["variance"] == "fixed"
    bad = dict(spec, manifest="0" * 64)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    res = cli.invoke(main, ["evaluate", str(tmp_path / "bad.json"), "--store", str(tmp_path / "store")])
    assert res.exit_code == 2 and "no index manifest" in res.output and "Traceback" not in res.output
    res = cli.invoke(main, ["evaluate", str(tmp_path / "spec.json"), "--store", str(tmp_path / "store"),
                            "-o", "binning=closed"])
    assert res.exit_code == 2 and "binning is one of inclusive, reference" in res.output
