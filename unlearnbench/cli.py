"""The ``unlearnbench`` command. Thin: it parses, calls the library, prints.

Library errors (``UnlearnbenchError``) become one message and a non-zero exit, no traceback.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import progress
from .errors import UnlearnbenchError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UnlearnbenchError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(2)


def _host():
    from .plugins import get_host

    return get_host()


def _resolve(method, scenario, config_file, overrides):
    from .config import load_file, resolve

    file_layer = load_file(config_file) if config_file else None
    return resolve(_host(), method=method, scenario=scenario, file_layer=file_layer, overrides=list(overrides))


def _seeds(text: str | None):
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip() != ""]
    except ValueError:
        raise click.BadParameter(f"--seeds takes comma-separated integers, e.g. 0,1,2, not {text!r}")


common = [
    click.option("--method", "-m", help="method name (`unlearnbench list methods`); default negmerge"),
    click.option("--scenario", "-s", help="scenario name (`unlearnbench list scenarios`); default digits-10pct"),
    click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file"),
    click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
                 help="config override, e.g. -o pool.size=9 -o selection=oracle_avg_gap"),
]


def with_common(fn):
    for deco in reversed(common):
        fn = deco(fn)
    return fn


@click.group(cls=_Group)
@click.version_option(package_name="unlearnbench")
def main():
    """Compare machine-unlearning methods for image classifiers, fairly and reproducibly."""


@main.command()
@with_common
@click.option("--seeds", help="comma-separated trials, e.g. 0,1,2 (default: the config's, 0,1,2)")
@click.option("--store", type=click.Path(file_okay=False), help="artifact store (default: user cache dir; "
              "or UNLEARNBENCH_STORE)")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="where run.json records go")
@click.option("--data-root", type=click.Path(), help="where data sets live (or UNLEARNBENCH_DATA)")
@click.option("--quiet", "-q", is_flag=True, help="no progress bars")
@click.option("--json", "as_json", is_flag=True, help="print the run records as JSON")
def run(method, scenario, config_file, overrides, seeds, store, runs_dir, data_root, quiet, as_json):
    """Run one method on one scenario for each trial and record run.json per trial."""
    from .runner import format_table, run_trial, summarise
    from .store import Store

    if quiet:
        progress.set_quiet(True)
    extra = list(overrides)
    s = _seeds(seeds)
    if s is not None:
        extra.append(f"seeds=[{','.join(map(str, s))}]")
    res = _resolve(method, scenario, config_file, extra)
    st = Store(store)
    records = []
    raw_cache: dict = {}
    for trial in res.cfg.seeds:
        progress.say(f"== {res.method.name} on {res.scenario.name}, trial {trial} (config {res.hash[:12]})")
        records.append(run_trial(res, int(trial), store=st, runs_dir=Path(runs_dir), data_root=data_root,
                                 raw_cache=raw_cache))
    if as_json:
        click.echo(json.dumps([{k: v for k, v in r.items() if k != "_path"} for r in records], indent=1,
                              default=float))
        return
    sel = records[0].get("selection") or {}
    tag = f", selection {sel.get('rule')}" + (" [ORACLE]" if sel.get("oracle") else "") if sel else ""
    click.echo(f"\n{res.method.name} on {res.scenario.name}: {len(records)} trial(s) "
               f"{[r['trial'] for r in records]}, used splits {records[0]['used_splits']}{tag}")
    click.echo(format_table(summarise(records)))
    total = sum(r["timings"]["total_s"] for r in records)
    click.echo(f"wall {total:.1f}s; records in {Path(runs_dir) / res.scenario.name / res.run_name}")


@main.command()
@click.option("--methods", required=True, help="comma-separated method names")
@click.option("--scenarios", default="digits-10pct", show_default=True, help="comma-separated scenario names")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False))
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--store", type=click.Path(file_okay=False))
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--data-root", type=click.Path())
@click.option("--quiet", "-q", is_flag=True)
def sweep(methods, scenarios, seeds, config_file, overrides, store, runs_dir, data_root, quiet):
    """Run the grid methods x scenarios x seeds, skipping runs already recorded with the same
    config hash; interrupted, it resumes where it stopped (finished runs and stored models are kept)."""
    from .runner import sweep_grid
    from .store import Store

    if quiet:
        progress.set_quiet(True)
    grid = [(m.strip(), s.strip()) for s in scenarios.split(",") if s.strip() for m in methods.split(",") if m.strip()]
    resolved = [_resolve(m, s, config_file, overrides) for m, s in grid]  # every config checked before any run
    done = sweep_grid(resolved, _seeds(seeds), store=Store(store), runs_dir=Path(runs_dir), data_root=data_root,
                      echo=click.echo)
    click.echo(f"sweep: {done['ran']} run(s) now, {done['skipped']} already recorded, "
               f"{done['failed']} failed; records in {runs_dir}")
    if done["failed"]:
        sys.exit(1)


@main.command()
@click.argument("records", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--scenarios", help="only these scenarios (comma-separated)")
@click.option("--methods", help="only these run folders, e.g. negmerge,finetune (comma-separated)")
@click.option("--seeds", help="only these trials, e.g. 0,1")
@click.option("--store", type=click.Path(file_okay=False),
              help="reuse this store (default: a fresh temporary one, so nothing older is reused)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="keep the reruns' records here (default: discarded)")
@click.option("--data-root", type=click.Path())
@click.option("--quiet", "-q", is_flag=True)
def reproduce(records, scenarios, methods, seeds, store, out_dir, data_root, quiet):
    """Rerun recorded runs (run.json files or folders of them) exactly as configured, and report
    each as reproduced or what differs. Exit status 1 if any differs."""
    from .reproduce import find_records, reproduce as rerun

    if quiet:
        progress.set_quiet(True)
    keep = {k: {x.strip() for x in v.split(",") if x.strip()} for k, v in
            (("scenario", scenarios), ("method", methods), ("seed", seeds)) if v}
    found = []
    for p in find_records(records):
        parts = {"scenario": p.parent.parent.parent.name, "method": p.parent.parent.name,
                 "seed": p.parent.name.removeprefix("seed-")}
        if all(parts[k] in v for k, v in keep.items()):
            found.append(p)
    if not found:
        raise click.ClickException(f"no run.json under {', '.join(records)} matches the filters")
    out = rerun(_host(), found, store_root=store, out_dir=out_dir, data_root=data_root, echo=click.echo)
    click.echo(f"reproduce: {out['reproduced']} reproduced, {out['differs']} differ, {out['skipped']} skipped "
               f"of {len(found)}")
    if out["differs"]:
        sys.exit(1)


@main.command()
@click.argument("runs_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False))
def leaderboard(runs_dir, out_dir):
    """Write Markdown + CSV tables per scenario, plots and a sortable HTML page from RUNS_DIR."""
    from .leaderboard import build

    done = build(runs_dir, out_dir, _host())
    click.echo(f"{done['records']} run records, scenarios {', '.join(done['scenarios'])}; wrote "
               f"{len(done['written'])} files in {out_dir}")
    for scen, ws in done["warnings"].items():
        for w in ws:
            click.echo(f"warning: {scen}: {w}", err=True)


@main.command("config")
@with_common
def config_cmd(method, scenario, config_file, overrides):
    """Print the resolved config (YAML) and its hash."""
    from omegaconf import OmegaConf

    res = _resolve(method, scenario, config_file, overrides)
    click.echo(OmegaConf.to_yaml(res.cfg).rstrip())
    click.echo(f"# config hash: {res.hash}")


@main.command("list")
@click.argument("what", type=click.Choice(["methods", "scenarios", "rules"]))
@click.option("--options", is_flag=True, help="also print each plugin's options (type, default, help, source)")
@click.option("--markdown", is_flag=True, help="a Markdown table (the README's method table is this output)")
def list_cmd(what, options, markdown):
    """List registered methods, scenarios or selection rules."""
    from .config import options_of

    host = _host()
    reg = {"methods": host.methods, "scenarios": host.scenarios, "rules": host.rules}[what]
    if markdown:
        click.echo(markdown_table(what, reg))
        return
    for name in reg.names():
        entry = reg.entries[name]
        obj = entry.obj
        extra = ""
        if what == "methods":
            extra = f"  [uses: {'+'.join(sorted(obj.uses)) or '-'}]"
        if what == "rules" and obj.oracle:
            extra = "  [ORACLE]"
        click.echo(f"{name:<22} {obj.description}{extra}  ({entry.plugin})")
        if options:
            for o in options_of(obj.Config):
                click.echo(f"    {o['name']}: {o['type']} = {o['default']!r}  {o['help']} {o['source']}".rstrip())


def markdown_table(what: str, reg) -> str:
    rows = ["| Name | Used splits | What it does | Plugin |", "|---|---|---|---|"] if what == "methods" else \
        ["| Name | What it is | Plugin |", "|---|---|---|"]
    for name in reg.names():
        e = reg.entries[name]
        desc = e.obj.description.replace("|", "\\|")
        if what == "methods":
            rows.append(f"| `{name}` | {'+'.join(sorted(e.obj.uses))} | {desc} | {e.plugin} |")
        else:
            tag = " (ORACLE)" if getattr(e.obj, "oracle", False) else ""
            rows.append(f"| `{name}` | {desc}{tag} | {e.plugin} |")
    return "\n".join(rows)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--hook", help="only plugins implementing this hook")
def plugins(as_json, hook):
    """Every plugin: its distribution, version, hooks and status."""
    host = _host()
    infos = [i for i in host.infos.values() if hook is None or hook in i.hooks]
    if as_json:
        click.echo(json.dumps([i.__dict__ for i in infos], indent=1))
        return
    for i in sorted(infos, key=lambda i: (i.dist, i.name)):
        click.echo(f"{i.name:<18} {i.dist} {i.version:<8} {i.status:<6} {','.join(i.hooks)}  [{i.module}]")


@main.command("check-recipe")
@click.option("--scenario", "-s", default="digits-10pct", show_default=True)
@click.option("--trial", default=0, show_default=True)
@click.option("--store", type=click.Path(file_okay=False))
@click.option("--data-root", type=click.Path())
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--quiet", "-q", is_flag=True)
def check_recipe_cmd(scenario, trial, store, data_root, overrides, quiet):
    """PROTOCOL §2.1's recipe character check: train original and Retrain, test the four conditions."""
    from .character import check_recipe
    from .store import Store

    if quiet:
        progress.set_quiet(True)
    res = _resolve("retrain", scenario, None, overrides)
    out = check_recipe(res.scenario, res.cfg.scenario, trial, Store(store), data_root, str(res.cfg.device),
                       int(res.cfg.threads))
    for name, c in out["checks"].items():
        click.echo(f"{'ok  ' if c['ok'] else 'FAIL'} {name}: {c['value']}")
    click.echo(json.dumps({k: out[k] for k in ("scenario", "trial", "original", "retrain", "timings", "wall_s")},
                          default=float))
    if not out["ok"]:
        sys.exit(1)


@main.command()
@click.option("--method", "-m", default="negmerge", show_default=True, help="a merge method")
@click.argument("base", type=click.Path(exists=True, dir_okay=False))
@click.argument("finetuned", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="output .safetensors")
@click.option("--lam", type=float, help="write BASE − lam·τ (buffers from BASE) instead of τ")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="merge method option")
@click.option("--engine", default="auto", show_default=True, type=click.Choice(["auto", "chunked", "per-file"]),
              help="chunked: read every file chunk by chunk (safetensors, elementwise methods); auto picks it")
def merge(method, base, finetuned, output, lam, params, engine):
    """Merge checkpoints you already have: task vectors FTi − BASE, merged by METHOD.

    Writes the merged task vector, or with --lam the edited model BASE − lam·τ. Inputs are
    safetensors or torch state dicts (loaded with weights_only=True: no code is executed).
    """
    from .merge import merge_files

    summary = merge_files(_host(), method, base, list(finetuned), output, lam, list(params), engine)
    click.echo(json.dumps(summary, indent=1))


if __name__ == "__main__":  # pragma: no cover
    main()
