"""Plugin discovery through entry points, failure isolation, duplicate names (DESIGN: plugins)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers import PLUGINS_DIR, cli_env
from unlearnbench.errors import PluginError
from unlearnbench.plugins import PluginHost


def test_builtins_arrive_through_entry_points(host):
    assert {"negmerge", "task-arithmetic", "retrain"} <= set(host.methods.names())
    assert {"digits-10pct", "digits-class", "fmnist-10pct", "fmnist-class"} <= set(host.scenarios.names())
    assert {"val_matched", "oracle_avg_gap"} <= set(host.rules.names())
    assert host.methods.entries["negmerge"].dist.startswith("unlearnbench")  # registered as a distribution


def test_third_party_plugin_discovered(example_plugin_path):
    h = PluginHost()
    h.load_entry_points()
    assert "example-ascent-step" in h.methods.names()
    assert h.methods.entries["example-ascent-step"].dist == "unlearnbench-example 0.1.0"


def test_third_party_plugin_in_cli_and_end_to_end(tmp_path):
    env = cli_env(PYTHONPATH=str(PLUGINS_DIR))
    out = subprocess.run([sys.executable, "-m", "unlearnbench.cli", "list", "methods"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "example-ascent-step" in out
    plug = subprocess.run([sys.executable, "-m", "unlearnbench.cli", "plugins"], env=env,
                          capture_output=True, text=True, check=True).stdout
    assert "unlearnbench-example" in plug
    r = subprocess.run([sys.executable, "-m", "unlearnbench.cli", "run", "-q", "-m", "example-ascent-step",
                        "--seeds", "0", "--store", str(tmp_path / "s"), "--runs-dir", str(tmp_path / "runs"),
                        "-s", "digits-10pct", "-o", "method.lr=0.5"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "runs" / "digits-10pct").glob("example-ascent-step@*/seed-0/run.json"))) == 1
    assert "example-ascent-step" in r.stdout and "Retrain" in r.stdout


def _fake_dist(tmp_path, dist, eps, modules):
    di = tmp_path / f"{dist}-1.0.dist-info"
    di.mkdir()
    (di / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (di / "entry_points.txt").write_text("[unlearnbench]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    for name, src in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(src))


def test_broken_plugin_named_others_work(tmp_path, monkeypatch, capsys):
    _fake_dist(tmp_path, "broken-plugin", {"broken": "broken_mod"}, {"broken_mod": "import no_such_module_xyz\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    h = PluginHost()
    h.load_entry_points()
    err = capsys.readouterr().err
    assert "'broken'" in err and "broken-plugin" in err and "no_such_module_xyz" in err
    assert "negmerge" in h.methods.names()  # the rest keep working
    assert h.infos["broken"].status.startswith("failed")
    monkeypatch.setenv("UNLEARNBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="broken"):
        PluginHost().load_entry_points()


def test_duplicate_name_names_both(tmp_path, monkeypatch):
    _fake_dist(tmp_path, "copycat", {"copycat": "copycat_mod"}, {"copycat_mod": """
        from unlearnbench import MergeMethod, hookimpl
        class Fake(MergeMethod):
            name = "negmerge"
            def reducer(self, cfg): return None
        @hookimpl
        def register_methods(register):
            register(Fake())
        """})
    monkeypatch.syspath_prepend(str(tmp_path))
    h = PluginHost()
    h.load_entry_points()
    with pytest.raises(PluginError) as e:
        h.methods.names()
    assert "'negmerge'" in str(e.value) and "copycat" in str(e.value) and "unlearnbench" in str(e.value)


def test_misspelled_hook_rejected():
    class Bad:
        from unlearnbench import hookimpl

        @hookimpl
        def register_method(self, register):  # missing the s
            pass

    h = PluginHost()
    with pytest.raises(PluginError, match="does not exist"):
        h.register(Bad(), "bad")


def test_method_declaring_unknown_split_rejected():
    from unlearnbench import Method, hookimpl

    class Peek(Method):
        name = "peek"
        uses = frozenset({"forget", "test"})

    class P:
        @hookimpl
        def register_methods(self, register):
            register(Peek())

    h = PluginHost()
    h.register(P(), "peeker")
    with pytest.raises(PluginError, match="test"):
        h.methods.names()


def test_load_subset_env(monkeypatch):
    monkeypatch.setenv("UNLEARNBENCH_LOAD_PLUGINS", "negmerge,rules,digits")
    h = PluginHost()
    h.load_entry_points()
    assert h.methods.names() == ["all", "conflict", "linear-negmerge", "negmerge", "negmerge-max",
                                 "negmerge-min"]  # one family


def _method_plugin(method: str) -> str:
    return f"""
        from unlearnbench import Method, Result, hookimpl
        class M(Method):
            name = "{method}"
            description = "a fake method"
            uses = frozenset({{"forget"}})
            def unlearn(self, ctx): return Result(state=ctx.original())
        @hookimpl
        def register_methods(register):
            register(M())
        """


def test_same_entry_point_name_in_two_distributions_loads_both(tmp_path, monkeypatch):
    """Two third-party distributions whose entry point is called `merges`, like a built-in's: all three load."""
    for dist, mod, method in (("beta-plugin", "beta_mod", "beta-method"), ("alpha-plugin", "alpha_mod", "alpha-method")):
        d = tmp_path / dist
        d.mkdir()
        _fake_dist(d, dist, {"merges": mod}, {mod: _method_plugin(method)})
        monkeypatch.syspath_prepend(str(d))
    h = PluginHost()
    h.load_entry_points()
    assert h.infos["merges"].dist == "unlearnbench"  # the built-in keeps its name, whatever sys.path's order
    assert (h.infos["alpha-plugin:merges"].dist, h.infos["alpha-plugin:merges"].status) == ("alpha-plugin", "ok")
    assert (h.infos["beta-plugin:merges"].dist, h.infos["beta-plugin:merges"].status) == ("beta-plugin", "ok")
    assert {"alpha-method", "beta-method", "ties", "magmax"} <= set(h.methods.names())
    assert h.methods.entries["alpha-method"].plugin == "alpha-plugin:merges"
    # UNLEARNBENCH_LOAD_PLUGINS selects one of them by distribution or by its plugin name; the name stays
    for sel in ("alpha-plugin", "alpha-plugin:merges"):
        monkeypatch.setenv("UNLEARNBENCH_LOAD_PLUGINS", sel)
        h = PluginHost()
        h.load_entry_points()
        assert list(h.infos) == ["alpha-plugin:merges"] and h.methods.names() == ["alpha-method"]
    # and `unlearnbench plugins` lists both under their names
    monkeypatch.delenv("UNLEARNBENCH_LOAD_PLUGINS")
    env = cli_env(PYTHONPATH=f"{tmp_path / 'alpha-plugin'}:{tmp_path / 'beta-plugin'}")
    out = subprocess.run([sys.executable, "-m", "unlearnbench.cli", "plugins"], env=env, capture_output=True,
                         text=True, check=True).stdout
    lines = {ln.split()[0]: ln for ln in out.splitlines()}
    assert "alpha-plugin" in lines["alpha-plugin:merges"] and "beta-plugin" in lines["beta-plugin:merges"]
    assert "unlearnbench.methods.merges" in lines["merges"]


def test_same_distribution_twice_on_sys_path_loads_once(tmp_path, monkeypatch):
    for copy in ("a", "b"):
        d = tmp_path / copy
        d.mkdir()
        _fake_dist(d, "gamma-plugin", {"gamma": "gamma_mod"}, {"gamma_mod": _method_plugin("gamma-method")})
        monkeypatch.syspath_prepend(str(d))
    h = PluginHost()
    h.load_entry_points()
    assert [n for n in h.infos if "gamma" in n] == ["gamma"] and "gamma-method" in h.methods.names()
    # also where importlib.metadata itself does not fold the copies (older Pythons, importlib_metadata):
    import unlearnbench.plugins as plugins

    real = plugins.md.entry_points
    monkeypatch.setattr(plugins.md, "entry_points", lambda group: list(real(group=group)) * 2)
    h = PluginHost()
    h.load_entry_points()
    assert not [n for n in h.infos if ":" in n] and "gamma-method" in h.methods.names()
    h.load_entry_points()  # a second call loads nothing new
    assert not [n for n in h.infos if ":" in n]
