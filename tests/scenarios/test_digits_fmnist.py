"""Splits and manifests (PROTOCOL §1), the digits and Fashion-MNIST loaders on native-format files."""
from __future__ import annotations

import numpy as np
import pytest

from unlearnbench.errors import ConfigError, DataNotFound
from unlearnbench.scenario import manifest_digest
from unlearnbench.seeding import sha256_hex

from helpers import scen_cfg, write_idx


def test_digits_sizes_and_disjointness(host):
    scen, cfg = scen_cfg(host, "digits-10pct")
    t = scen.build_task(cfg, 0, None)
    s = t.manifest["sizes"]
    assert (s["train"], s["val"], s["test"]) == (1257, 180, 360)  # PROTOCOL §1.1
    assert s["forget"] == 125 and s["retain"] == 1132  # ⌊0.1·1257⌋
    assert s["mia_members"] == 360  # |D_test'| members from D_r (§8.2)
    sp = {k: set(v) for k, v in t.manifest["splits"].items()}
    assert not sp["train"] & sp["val"] and not sp["train"] & sp["test"] and not sp["val"] & sp["test"]
    assert sp["forget"] | sp["retain"] == sp["train"] and not sp["forget"] & sp["retain"]
    assert sp["mia_members"] <= sp["retain"]
    y = t.data.y.numpy()
    counts = np.bincount(y[t.manifest["splits"]["val"]], minlength=10)
    assert counts.max() - counts.min() <= 1  # stratified


def test_split_determinism_and_streams(host):
    scen, cfg = scen_cfg(host, "digits-10pct")
    a0, b0, a1 = scen.build_task(cfg, 0, None), scen.build_task(cfg, 0, None), scen.build_task(cfg, 1, None)
    assert a0.manifest_hash == b0.manifest_hash == manifest_digest(a0.manifest)
    assert a0.manifest["splits"]["test"] == a1.manifest["splits"]["test"]  # base partition fixed across trials
    assert a0.manifest["splits"]["forget"] != a1.manifest["splits"]["forget"]  # the forget stream depends on s
    assert a0.manifest_hash != a1.manifest_hash


def test_class_wise(host):
    scen, cfg = scen_cfg(host, "digits-class")
    t = scen.build_task(cfg, 0, None)
    y = t.data.y.numpy()
    sp = t.manifest["splits"]
    assert t.manifest["forget_class"] == 0 and set(y[sp["forget"]]) == {0}
    assert 0 not in set(y[sp["retain"]]) and 0 not in set(y[sp["test"]]) and 0 not in set(y[sp["val_retain"]])
    assert set(y[sp["test_forget_class"]]) == {0}
    scen, cfg = scen_cfg(host, "digits-class", forget_class="cycle")
    assert scen.build_task(cfg, 2, None).manifest["forget_class"] == 2
    scen, cfg = scen_cfg(host, "digits-class", forget_class=12)
    with pytest.raises(ConfigError, match="outside"):
        scen.build_task(cfg, 0, None)


# -- Fashion-MNIST, on small files written in the native IDX format ----------------------------

@pytest.fixture
def small_fmnist(monkeypatch):
    """make_fmnist's files are small: the loader checks them without Fashion-MNIST's 60,000 /
    10,000 counts (tests/scenarios/test_bad_data.py shows the real check refuses them)."""
    from unlearnbench.scenarios import fmnist

    monkeypatch.setattr(fmnist, "DEFINITION", fmnist.DEFINITION.small())


def make_fmnist(root, n_train=200, n_test=50, gz=True, layout="flat"):
    rng = np.random.default_rng(0)
    d = root / "FashionMNIST" / "raw" if layout == "torchvision" else root
    d.mkdir(parents=True, exist_ok=True)
    write_idx(d / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), gz)
    write_idx(d / "train-labels-idx1-ubyte", np.arange(n_train) % 10, gz)
    write_idx(d / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), gz)
    write_idx(d / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10, gz)
    return d


@pytest.mark.parametrize("gz,layout", [(True, "flat"), (False, "torchvision")])
def test_fmnist_loader_native_files(small_fmnist, host, tmp_path, gz, layout):
    make_fmnist(tmp_path, gz=gz, layout=layout)
    scen, cfg = scen_cfg(host, "fmnist-10pct")
    t = scen.build_task(cfg, 0, str(tmp_path))
    assert t.data.x.shape == (250, 1, 28, 28) and 0.0 <= float(t.data.x.min()) and float(t.data.x.max()) <= 1.0
    s = t.manifest["sizes"]
    assert (s["train"], s["val"], s["test"]) == (180, 20, 50)  # 10% of train as val; official test
    assert min(t.manifest["splits"]["test"]) == 200  # test indices are the official test files
    m = t.new_model()
    assert m(t.data.x[:2]).shape == (2, 10)


def test_fmnist_missing_says_where(host, tmp_path):
    scen, cfg = scen_cfg(host, "fmnist-10pct")
    with pytest.raises(DataNotFound, match="dataset-fashion-mnist.*--data-root"):
        scen.build_task(cfg, 0, str(tmp_path))


def test_fmnist_reuses_an_earlier_torchvision_download_offline(small_fmnist, host, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 (tests, CI, tox) forbids a download, not reading one made earlier (issue 13)."""
    import os

    from unlearnbench.scenarios import fmnist

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # platformdirs' user cache
    monkeypatch.delenv("UNLEARNBENCH_DATA", raising=False)
    monkeypatch.setattr(fmnist, "DEBIAN_DIR", tmp_path / "no-debian-package")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(DataNotFound, match=r"unlearnbench/data \(no download: HF_HUB_OFFLINE=1\)"):
        fmnist.load(None)
    raw = make_fmnist(tmp_path / "xdg" / "unlearnbench" / "data", gz=False, layout="torchvision")
    scen, cfg = scen_cfg(host, "fmnist-10pct")
    t = scen.build_task(cfg, 0, None)
    assert t.data.x.shape == (250, 1, 28, 28) and t.manifest["sizes"]["test"] == 50
    assert t.data.source == f"{raw} (an earlier download, reused; HF_HUB_OFFLINE=1, nothing downloaded)"


def test_fmnist_corrupt_file_detected(small_fmnist, host, tmp_path):
    d = make_fmnist(tmp_path, gz=False)
    p = d / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])  # truncated
    scen, cfg = scen_cfg(host, "fmnist-10pct")
    with pytest.raises(DataNotFound, match="truncated"):
        scen.build_task(cfg, 0, str(tmp_path))


def test_fmnist_debian_package_real_sizes(host):
    """The real data set, when the Debian package is installed (.ci/run installs it)."""
    from unlearnbench.scenarios.fmnist import DEBIAN_DIR

    if not DEBIAN_DIR.exists():
        pytest.skip("dataset-fashion-mnist is not installed")
    scen, cfg = scen_cfg(host, "fmnist-10pct")
    t = scen.build_task(cfg, 0, None)
    s = t.manifest["sizes"]
    assert (s["train"], s["val"], s["test"], s["forget"]) == (54000, 6000, 10000, 5400)
    y = t.data.y.numpy()
    assert (np.bincount(y[t.manifest["splits"]["val"]]) == 600).all()  # 600 per class (§1.1)


def test_selection_subsamples_are_nested_and_leave_the_manifest_hash_alone():
    """PROTOCOL §5(d): the oracle rules' selection-time subsamples and the two test halves are drawn once
    per trial, stored in the manifest, and nested so a sweep that scores test and the D_r floor forwards
    nothing more for them; the manifest's hash (and so every stored artifact's key) ignores them."""
    from unlearnbench.scenario import DERIVED_SPLITS

    from unlearnbench.config import resolve
    from unlearnbench.plugins import get_host

    host = get_host()
    for name in ("digits-10pct", "digits-class"):
        res = resolve(host, scenario=name)
        task = res.scenario.build_task(res.cfg.scenario, 0, None)
        sp = {k: set(v) for k, v in task.manifest["splits"].items()}
        assert sp["mia_members_sel"] <= sp["retain_floor"] <= sp["retain"]
        assert sp["mia_members_sel"] <= sp["mia_members"] and sp["mia_nonmembers_sel"] <= sp["mia_nonmembers"]
        assert sp["test_a"] | sp["test_b"] == sp["test"] and not sp["test_a"] & sp["test_b"]
        assert abs(len(sp["test_a"]) - len(sp["test_b"])) <= 1
        for half in ("a", "b"):
            assert sp[f"mia_nonmembers_{half}"] <= sp[f"test_{half}"]
            assert len(sp[f"mia_members_{half}"]) == len(sp[f"mia_nonmembers_{half}"])
        assert not sp["mia_members_a"] & sp["mia_members_b"]
        assert sp["mia_nonmembers_sel_a"] <= sp["test_a"] & sp["mia_nonmembers_sel"]
        stripped = {**task.manifest, "splits": {k: v for k, v in task.manifest["splits"].items()
                                                if k not in DERIVED_SPLITS},
                    "sizes": {k: v for k, v in task.manifest["sizes"].items() if k not in DERIVED_SPLITS}}
        assert task.manifest_hash == sha256_hex(stripped) == manifest_digest(task.manifest)
