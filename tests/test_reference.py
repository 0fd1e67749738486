"""The paper's numbers typed beside each scenario (``Scenario.paper``, PROTOCOL §9.3–9.4) are checked
against themselves: a typo in one cell breaks its row's printed Avg. Gap."""
from __future__ import annotations

import pytest

KEYS = ("acc_retain", "acc_forget", "acc_test", "mia")


def _papers():
    from unlearnbench.plugins import PluginHost

    h = PluginHost()
    h.load_entry_points()
    return {s: h.scenarios.get(s).paper for s in h.scenarios.names() if h.scenarios.get(s).paper}


PAPERS = _papers()


def test_the_paper_tables_are_found():
    assert {"cifar10-10pct", "cifar10-class", "cub200-10pct", "clip-mnist"} <= set(PAPERS)


@pytest.mark.parametrize("scenario", sorted(s for s, t in PAPERS.items()
                                             if any(r["method"] == "retrain" for r in t["rows"])))
def test_printed_avg_gap_matches_the_cells(scenario):
    rows = PAPERS[scenario]["rows"]
    ret = next(r for r in rows if r["method"] == "retrain")["cells"]
    for r in rows:
        c = r["cells"]
        gap = sum(abs(c[k]["mean"] - ret[k]["mean"]) for k in KEYS) / 4  # PROTOCOL §8.3, from the means
        assert gap == pytest.approx(c["avg_gap"]["mean"], abs=0.015), (scenario, r["label"])


def test_reference_rows_name_registered_methods(host):
    for scenario, table in PAPERS.items():
        for r in table["rows"]:
            assert r["method"] in host.methods, (scenario, r["method"])
