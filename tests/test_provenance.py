"""Provenance (unlearnbench.provenance): which code a record came from, and whether it was committed
(PROTOCOL §11 v2: a board's records come from committed code; records and results do not count)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from unlearnbench.provenance import DIRTY_RULE, git_sha, git_state, provenance


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_only_the_package_sources_make_a_checkout_dirty(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    for rel in ("unlearnbench/core.py", "methods/m.py", "leaderboards/runs/a/run.json", "README.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    here = tmp_path / "unlearnbench"
    assert git_state(here) == {"sha": sha, "dirty": []} and git_sha(here) == sha
    (tmp_path / "leaderboards" / "runs" / "a" / "run.json").write_text("y\n")  # a record being written
    (tmp_path / "leaderboards" / "runs" / "b.json").write_text("new\n")
    (tmp_path / "README.md").write_text("docs\n")
    assert git_state(here)["dirty"] == [] and git_sha(here) == sha
    (tmp_path / "methods" / "m.py").write_text("changed\n")
    (tmp_path / "unlearnbench" / "new.py").write_text("untracked source\n")
    assert git_state(here)["dirty"] == ["methods/m.py", "unlearnbench/new.py"]
    assert git_sha(here) == sha + "-dirty"


def test_a_record_says_which_rule_it_applied():
    p = provenance("cpu", 1)
    if p["git_sha"] is None:
        pytest.skip("not run from a git checkout")
    assert p["git_dirty_rule"] == DIRTY_RULE and p["git_sha"].endswith("-dirty") == bool(p["git_dirty"])
    assert p["git_dirty_count"] >= len(p["git_dirty"])  # the list is cut at 50 files
