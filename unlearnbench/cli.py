"""The ``unlearnbench`` command. Thin: it parses, calls the library, prints.

Library errors (``UnlearnbenchError``) become one message and a non-zero exit, no traceback.
``-o KEY=VALUE`` always sets an option (of the config, or of ``merge``'s method); files and
folders a command writes are ``--out``. Options several commands share are declared once, below.
The README's command reference is ``cli_reference()`` (``unlearnbench cli-reference``).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import progress
from .config import DEFAULT_METHOD, DEFAULT_SCENARIO
from .errors import UnlearnbenchError


class _Group(click.Group):
    """Library errors are one message and exit 2; any other exception is one line with a pointer to
    its traceback (``unlearnbench --debug CMD`` shows it; it is also written to a log file), exit 1.
    click's own usage errors, ``--help`` and exits pass through as click prints them."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UnlearnbenchError as e:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {e}", err=True)
            sys.exit(2)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except BrokenPipeError:  # the reader went away (`unlearnbench list methods | head`): end quietly,
            # as a command killed by SIGPIPE would (exit 128 + 13), and keep Python's final flush of
            # stdout from raising again at shutdown (the Python docs' recipe, "Note on SIGPIPE")
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except Exception as e:  # a bug, or a fault no check foresaw: never a bare traceback
            if ctx.params.get("debug"):
                raise
            log = _write_traceback()
            first = (str(e).strip().splitlines() or [""])[0]
            where = f", or see {log}" if log else ""
            click.echo(f"Error: internal error: {type(e).__name__}: {first} "
                       f"(run with --debug for the traceback{where})", err=True)
            sys.exit(1)


def _write_traceback() -> str | None:
    """The current exception's traceback in a new temp file; its path, or None if it cannot be written."""
    import tempfile
    import traceback

    try:
        fd, path = tempfile.mkstemp(prefix="unlearnbench-error-", suffix=".log")
        with open(fd, "w", encoding="utf-8") as f:
            f.write(traceback.format_exc())
        return path
    except OSError:
        return None


def _host():
    from .plugins import get_host

    return get_host()


def _resolve(method, scenario, config_file, overrides):
    from .config import load_file, resolve

    file_layer = load_file(config_file) if config_file else None
    return resolve(_host(), method=method, scenario=scenario, file_layer=file_layer, overrides=list(overrides))


def _seeds(text: str | None):
    """``--seeds`` as a list of trials: comma-separated, distinct integers >= 0 (empty is an error)."""
    from .config import check_seeds
    from .errors import ConfigError

    if text is None:
        return None
    parts = [s.strip() for s in text.split(",")]
    if not any(parts):
        raise ConfigError(f"--seeds {text!r} names no trial: give comma-separated integers >= 0, e.g. --seeds 0,1,2")
    try:
        seeds = [int(s) for s in parts if s]
    except ValueError:
        raise click.BadParameter(f"--seeds takes comma-separated integers, e.g. 0,1,2, not {text!r}") from None
    return check_seeds(seeds, f"--seeds {text!r}")


# -- options shared by several commands, each declared once ------------------------------------------

def _override_option(help: str = "config override, e.g. -o pool.size=9 -o selection=oracle_avg_gap"):
    return click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE", help=help)


CONFIG_OPTION = click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file")
COMMON = [
    click.option("--method", "-m", help=f"method name (`unlearnbench list methods`); default {DEFAULT_METHOD}"),
    click.option("--scenario", "-s",
                 help=f"scenario name (`unlearnbench list scenarios`); default {DEFAULT_SCENARIO}"),
    CONFIG_OPTION,
    _override_option(),
]
STRICT_HELP = ("stop at the first unreadable run.json (exit 2) instead of warning with its path and {skip}")
STORE_HELP = "artifact store (default: user cache dir; or UNLEARNBENCH_STORE)"


def _apply(options: list, fn):
    for deco in reversed(options):
        fn = deco(fn)
    return fn


def with_common(fn):
    """--method/-m, --scenario/-s, --config and -o/--override: which config a command resolves."""
    return _apply(COMMON, fn)


def _quiet(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        progress.set_quiet(True)


def store_options(*, runs_dir: bool = True, store_help: str = STORE_HELP):
    """--store, --runs-dir (with ``runs_dir``), --data-root and --quiet/-q: where a command that runs
    trials keeps artifacts, records and data, and whether it draws progress bars (``-q`` takes
    effect as it is parsed, so the command sees no ``quiet`` argument)."""
    options = [
        click.option("--store", type=click.Path(file_okay=False), help=store_help),
        *([click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
                        help="where run.json records go")] if runs_dir else []),
        click.option("--data-root", type=click.Path(), help="where data sets live (or UNLEARNBENCH_DATA)"),
        click.option("--quiet", "-q", is_flag=True, expose_value=False, callback=_quiet, help="no progress bars"),
    ]
    return lambda fn: _apply(options, fn)


def _engines() -> list[str]:
    from .merge.files import Engine

    return [e.value for e in Engine]


@click.group(cls=_Group)
@click.version_option(package_name="unlearnbench")
@click.option("--debug", is_flag=True, help="show the full traceback of an unexpected error")
def main(debug):
    """Compare machine-unlearning methods for image classifiers, fairly and reproducibly."""


@main.command()
@with_common
@click.option("--seeds", help="comma-separated trials, e.g. 0,1,2 (default: the config's, 0,1,2)")
@store_options()
@click.option("--json", "as_json", is_flag=True, help="print the run records as JSON")
def run(method, scenario, config_file, overrides, seeds, store, runs_dir, data_root, as_json):
    """Run one method on one scenario for each trial and record run.json per trial."""
    from .report import format_table, summarise
    from .runner import run_trial
    from .store import Store

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
    _ensembles_after([res], st, Path(runs_dir), data_root, [int(t) for t in res.cfg.seeds])
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


def _ensembles_after(resolved: list, store, runs_dir: Path, data_root, trials: list[int]) -> None:
    """-o eval.ensembles=on: after the runs, the §8.7 ensembles of each (scenario, method) whose trial 0 ran
    (``unlearnbench ensemble``, at ``eval.preset``'s sizes). Off by default: hours per method on fmnist."""
    from .ensemble.build import build_and_score, sizes_for

    todo: dict[str, list] = {}
    for res in resolved:
        if str(res.cfg.eval.ensembles) == "on" and 0 in trials and not res.method.oracle:
            todo.setdefault(res.scenario.name, []).append(res)
    for scen, group in todo.items():
        progress.say(f"== ensembles of {scen} (-o eval.ensembles=on, preset {group[0].cfg.eval.preset})")
        build_and_score(_host(), scen, [r.run_name for r in group], store=store, runs_dir=runs_dir,
                        data_root=data_root, sizes=sizes_for(group[0].scenario, str(group[0].cfg.eval.preset)),
                        echo=click.echo)  # each record's own config says how its members run (executor, threads)


@main.command()
@click.option("--methods", required=True, help="comma-separated method names")
@click.option("--scenarios", default=DEFAULT_SCENARIO, show_default=True, help="comma-separated scenario names")
@click.option("--seeds", default="0,1,2", show_default=True, help="comma-separated trials")
@CONFIG_OPTION
@_override_option("config override for every cell, e.g. -o pool.size=9")
@store_options()
@click.option("--strict", is_flag=True, help=STRICT_HELP.format(skip="running its cell again"))
def sweep(methods, scenarios, seeds, config_file, overrides, store, runs_dir, data_root, strict):
    """Run the grid methods x scenarios x seeds, skipping runs already recorded with the same
    config hash; interrupted, it resumes where it stopped (finished runs and stored models are kept)."""
    from .runner import sweep_grid
    from .store import Store

    grid = [(m.strip(), s.strip()) for s in scenarios.split(",") if s.strip() for m in methods.split(",") if m.strip()]
    resolved = [_resolve(m, s, config_file, overrides) for m, s in grid]  # every config checked before any run
    done = sweep_grid(resolved, _seeds(seeds), store=Store(store), runs_dir=Path(runs_dir), data_root=data_root,
                      echo=click.echo, strict=strict)
    click.echo(f"sweep: {done['ran']} run(s) now, {done['skipped']} already recorded, "
               f"{done['failed']} failed; records in {runs_dir}")
    s = _seeds(seeds)
    _ensembles_after(resolved, Store(store), Path(runs_dir), data_root, s if s is not None else [])
    if done["failed"]:
        sys.exit(1)


@main.command()
@click.argument("records", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--scenarios", help="only these scenarios (comma-separated)")
@click.option("--methods", help="only these run folders: method names, or NAME@VARIANT (comma-separated)")
@click.option("--seeds", help="only these trials, e.g. 0,1")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="keep the reruns' records here (default: discarded); never over a record: where one is "
                   "there, or DIR holds the records reproduced, as run.reproduced-<time>.json")
@store_options(runs_dir=False,
               store_help="reuse this store (default: a fresh temporary one, so nothing older is reused)")
@click.option("--strict", is_flag=True, help=STRICT_HELP.format(skip="skipping it"))
def reproduce(records, scenarios, methods, seeds, out_dir, store, data_root, strict):
    """Rerun recorded runs (run.json files or folders of them) exactly as configured, and report
    each as reproduced or what differs. Exit status 1 if any differs."""
    from .reproduce import find_records, reproduce as rerun

    _seeds(seeds)  # the same rules as run's --seeds: integers >= 0, distinct, at least one
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
    out = rerun(_host(), found, store_root=store, out_dir=out_dir, data_root=data_root, echo=click.echo,
                strict=strict)
    bad = f", {out['bad']} unreadable" if out["bad"] else ""
    click.echo(f"reproduce: {out['reproduced']} reproduced, {out['differs']} differ, {out['skipped']} skipped"
               f"{bad} of {len(found)}" + (f"; reruns' records: {', '.join(out['kept'])}" if out["kept"] else ""))
    if out["differs"] or out["bad"]:
        sys.exit(1)


@main.command()
@click.argument("runs_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="folder for the tables, plots and index.html")
@click.option("--strict", is_flag=True, help=STRICT_HELP.format(skip="skipping it"))
@click.option("--allow-dirty", is_flag=True,
              help="build from protocol-2 records of uncommitted code too; the board says it is not one to commit")
@click.option("--compare", "compare", type=click.Path(exists=True, file_okay=False), default=None,
              help="another protocol version's run records: README.md gets each method's Avg. Gap under both")
def leaderboard(runs_dir, out_dir, strict, allow_dirty, compare):
    """Write Markdown + CSV tables per scenario, plots and a static HTML page from RUNS_DIR.

    The page (index.html) links each row's records relative to RUNS_DIR's parent: build it there
    (`unlearnbench leaderboard runs --out .`) and the folder works from disk or any static host.

    The records must be of one protocol version (PROTOCOL §11), and protocol-2 records must come
    from committed code (their provenance's git_sha has no -dirty) unless --allow-dirty."""
    from .report import build

    done = build(runs_dir, out_dir, _host(), strict=strict, allow_dirty=allow_dirty, compare=compare,
                 warn=lambda m: click.echo(f"warning: {m}; skipped", err=True))
    skipped = f" ({len(done['bad'])} unreadable, skipped)" if done["bad"] else ""
    click.echo(f"{done['records']} run records{skipped}, scenarios {', '.join(done['scenarios'])}; wrote "
               f"{len(done['written'])} files in {out_dir}")
    for scen, ws in done["warnings"].items():
        for w in ws:
            click.echo(f"warning: {scen}: {w}", err=True)
    if Path(out_dir).resolve() != Path(runs_dir).resolve().parent:  # report/evidence.py: links from runs' parent
        click.echo(f"warning: index.html links the records relative to the folder that holds {runs_dir} "
                   f"(as runs/...); opened from {out_dir} those links do not resolve: build with --out "
                   f"{Path(runs_dir).resolve().parent}", err=True)


@main.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--store", type=click.Path(file_okay=False), help=STORE_HELP)
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
              help="binning=inclusive|reference, utility=unclipped|capped, variance=per_example|fixed")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="also write the result as JSON here")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON instead of a table")
def evaluate(spec, store, overrides, out_file, as_json):
    """Compute the ensemble metrics (PROTOCOL §8.7) from cached per-example outputs: KLOM per split,
    the NeurIPS 2023 forgetting quality with both utility ratios and the score, and U-LiRA.

    SPEC is a JSON file naming each ensemble's models by their outputs' store keys, or by run.json
    records (unlearnbench.ensemble.evaluate documents its layout). Nothing is trained or forwarded."""
    from .ensemble.evaluate import evaluate as run_evaluate
    from .ensemble.evaluate import parse_options, table
    from .errors import ConfigError
    from .store import Store

    try:
        doc = json.loads(Path(spec).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{spec} is not a readable JSON ensemble spec: {e}") from None
    result = run_evaluate(Store(store) if store else Store(), doc, base=Path(spec).parent,
                          options=parse_options(list(overrides)))
    if out_file:
        Path(out_file).write_text(json.dumps(result, indent=1))
    click.echo(json.dumps(result, indent=1) if as_json else table(result))


@main.command()
@click.option("--scenario", "-s", required=True, help="scenario name (`unlearnbench list scenarios`)")
@click.option("--methods", default="", help="comma-separated run folders of trial-0 records (method names, or "
              "NAME@VARIANT) to score; none: only the No unlearning and Retrain (independent) rows")
@click.option("--preset", default="auto", show_default=True,
              type=click.Choice(["auto", "faithful", "smoke", "minimal"]),
              help="ensemble sizes: faithful = challenge N 512, KLOM N 100, U-LiRA 64x10; smoke = 64, 64, 16x10; "
                   "minimal = 64, 64, 32x5 with variance=fixed; auto = the scenario's (PROTOCOL §8.7.4)")
@click.option("--challenge-n", type=click.IntRange(min=0), help="runs from O_0 and oracles of the challenge metric (0: off)")
@click.option("--klom-n", type=click.IntRange(min=0), help="originals, runs and oracles of KLOM (0: off)")
@click.option("--lira-k", type=click.IntRange(min=0), help="U-LiRA halves K (0: off, with --lira-m 0)")
@click.option("--lira-m", type=click.IntRange(min=0), help="U-LiRA forget sets per half M")
@click.option("--ulira-measure-retrain", is_flag=True,
              help="train U-LiRA's K x M retrains and measure its Retrain row (without it: measured if the store "
                   "already holds them, else its expectation, AUC 0.5)")
@_override_option("how the members run (-o executor=processes, -o executor.workers=2, -o threads=1) or a metric "
                  "option (binning=inclusive|reference, utility=unclipped|capped, variance=per_example|fixed)")
@store_options()
def ensemble(scenario, methods, preset, challenge_n, klom_n, lira_k, lira_m, ulira_measure_retrain, overrides, store,
             runs_dir, data_root):
    """Build the ensembles of PROTOCOL §8.7.0 for the trial-0 records of METHODS and score them under KLOM,
    the NeurIPS 2023 forgetting quality and U-LiRA; write <runs-dir>/<scenario>/<method>/ensemble.json
    (and <scenario>/ensemble.json: No unlearning, Retrain (independent)), which `leaderboard` shows.

    Each ensemble run replays its record's chosen recipe (hyperparameters, epoch, λ*) with a fresh run seed.
    Every member is an executor job and is stored as it finishes: interrupted, the command resumes. The
    same happens after `run` or `sweep` with -o eval.ensembles=on."""
    from .ensemble.build import build_and_score, sizes_for, summary_lines
    from .ensemble.evaluate import OPTIONS, parse_options
    from .store import Store

    metric = [o for o in overrides if o.partition("=")[0] in OPTIONS]
    config = [o for o in overrides if o.partition("=")[0] not in OPTIONS]
    opts = parse_options(metric)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    host = _host()
    sizes = sizes_for(host.scenarios.get(scenario), preset, challenge=challenge_n, klom=klom_n, lira_k=lira_k,
                      lira_m=lira_m, variance=opts["variance"] if any(o.startswith("variance=") for o in metric)
                      else None, lira_retrain=ulira_measure_retrain or None)
    results = build_and_score(host, scenario, names, store=Store(store), runs_dir=Path(runs_dir),
                              data_root=data_root, sizes=sizes, overrides=config, options=opts, echo=click.echo)
    for line in summary_lines(results):
        click.echo(line)


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
@click.option("--json", "as_json", is_flag=True, help="print them as JSON")
@click.option("--hook", help="only plugins implementing this hook")
def plugins(as_json, hook):
    """Every plugin: its distribution, version, hooks and status."""
    host = _host()
    if hook is not None:
        from . import hookspecs
        from .errors import unknown

        specs = [n for n in dir(hookspecs) if n.startswith("register_")]
        if hook not in specs:
            raise unknown("hook", hook, specs)
    infos = [i for i in host.infos.values() if hook is None or hook in i.hooks]
    if as_json:
        click.echo(json.dumps([i.__dict__ for i in infos], indent=1))
        return
    for i in sorted(infos, key=lambda i: (i.dist, i.name)):
        click.echo(f"{i.name:<18} {i.dist} {i.version:<8} {i.status:<6} {','.join(i.hooks)}  [{i.module}]")


@main.command("check-recipe")
@click.option("--scenario", "-s", default=DEFAULT_SCENARIO, show_default=True, help="scenario name")
@click.option("--trial", "trials", multiple=True, type=click.IntRange(min=0),
              help="a trial whose original and Retrain are trained and checked (repeatable); default every seed "
                   "of the config (-o seeds=...)")
@_override_option("config override, e.g. -o threads=2 -o scenario.forget_pct=20")
@store_options(runs_dir=False)
def check_recipe_cmd(scenario, trials, overrides, store, data_root):
    """PROTOCOL §2.1's recipe character check: train original and Retrain, test the four conditions.

    Every trial is checked (v2; a board shows the same check for each of its trials); the exit status
    is 1 when any trial fails, and the last line names the failing trials and conditions."""
    from .character import check_recipe
    from .store import Store

    # resolved with the oracle method (Retrain), whose suite defaults are the ones its stage trains under
    oracle = next((n for n in _host().methods.names() if _host().methods.get(n).oracle), None)
    res = _resolve(oracle, scenario, None, overrides)
    failed = []
    for trial in trials or [int(t) for t in res.cfg.seeds]:
        out = check_recipe(res.scenario, res.cfg.scenario, trial, Store(store), data_root, str(res.cfg.device),
                           int(res.cfg.threads))
        for name, c in out["checks"].items():
            click.echo(f"trial {trial}: {'ok  ' if c['ok'] else 'FAIL'} {name}: {c['value']}")
        click.echo(json.dumps({k: out[k] for k in ("scenario", "trial", "original", "retrain", "timings", "wall_s")},
                              default=float))
        failed += [f"trial {trial}: {name}" for name, c in out["checks"].items() if not c["ok"]]
    if failed:
        click.echo("character check FAILS on " + "; ".join(failed))
        sys.exit(1)


@main.command()
@click.option("--method", "-m", default=DEFAULT_METHOD, show_default=True,
              help="a merge method (`unlearnbench list methods`)")
@click.argument("base", type=click.Path(exists=True, dir_okay=False))
@click.argument("finetuned", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "output", required=True, type=click.Path(dir_okay=False),
              help="output .safetensors, written atomically; an existing file is replaced, unless it is an input "
                   "(refused)")
@click.option("--lam", type=float, help="write BASE − lam·τ (buffers from BASE) instead of τ; a finite number")
@_override_option("an option of the merge method, e.g. -o value=min (`unlearnbench list methods --options`)")
@click.option("--engine", default="auto", show_default=True, type=click.Choice(_engines()),
              help="chunked: read every file chunk by chunk (safetensors, elementwise methods); auto picks it")
def merge(method, base, finetuned, output, lam, overrides, engine):
    """Merge checkpoints you already have: task vectors FTi − BASE, merged by METHOD.

    Writes the merged task vector, or with --lam the edited model BASE − lam·τ. Inputs are
    safetensors or torch state dicts (loaded with weights_only=True: no code is executed). Each
    fine-tune must hold exactly the base's tensors, with its shapes and floating-point
    parameters; an extra or missing tensor, or a NaN or inf in any file, is an error, never
    dropped. Both engines refuse the same inputs, before any tensor is read where they can.
    """
    from .merge import merge_files

    summary = merge_files(_host(), method, base, list(finetuned), output, lam, list(overrides), engine)
    click.echo(json.dumps(summary, indent=1))


def cli_reference(width: int = 100) -> str:
    """Every command's ``--help``, as the README's command reference (Markdown): generated, so it
    cannot drift from the code (tests/test_meta.py keeps the README equal to it)."""
    root = click.Context(main, info_name="unlearnbench", terminal_width=width, max_content_width=width)
    blocks = [("unlearnbench --help", main.get_help(root))]
    for name in main.list_commands(root):
        cmd = main.get_command(root, name)
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=root, terminal_width=width, max_content_width=width)
        blocks.append((f"unlearnbench {name} --help", cmd.get_help(sub)))
    return "\n\n".join(f"```\n$ {title}\n{text}\n```" for title, text in blocks)


@main.command("cli-reference", hidden=True)
def cli_reference_cmd():
    """Print the README's command reference (every command's --help, as Markdown)."""
    click.echo(cli_reference())


if __name__ == "__main__":  # pragma: no cover
    main()
