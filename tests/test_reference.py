"""The paper's numbers typed into unlearnbench.reference (PROTOCOL §9.3–9.4) are checked
against themselves: a typo in one cell breaks its row's printed Avg. Gap."""
from __future__ import annotations

import pytest

from unlearnbench.reference import PAPER

KEYS = ("acc_retain", "acc_forget", "acc_test", "mia")


@pytest.mark.parametrize("scenario", sorted(s for s, t in PAPER.items()
                                             if any(r["method"] == "retrain" for r in t["rows"])))
def test_printed_avg_gap_matches_the_cells(scenario):
    rows = PAPER[scenario]["rows"]
    ret = next(r for r in rows if r["method"] == "retrain")["cells"]
    for r in rows:
        c = r["cells"]
        gap = sum(abs(c[k]["mean"] - ret[k]["mean"]) for k in KEYS) / 4  # PROTOCOL §8.3, from the means
        assert gap == pytest.approx(c["avg_gap"]["mean"], abs=0.015), (scenario, r["label"])


def test_reference_rows_name_registered_scenarios_and_methods(host):
    for scenario, table in PAPER.items():
        assert scenario in host.scenarios, scenario
        for r in table["rows"]:
            assert r["method"] in host.methods, (scenario, r["method"])
