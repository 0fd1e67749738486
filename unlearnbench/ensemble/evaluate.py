"""The ensemble metrics of recorded models, from their cached outputs alone (issue 18 acceptance 3,
``unlearnbench evaluate``): nothing is trained or forwarded, so a metric can be added or corrected and
every board recomputed.

An ensemble spec (JSON) names the models of each role by the store key of their outputs
(``ensemble.outputs``), or by a run record whose ``outputs.unlearned`` it is (a path ending in ``.json``,
relative to the spec's folder)::

    {"manifest": "<index manifest hash>",
     "oracle": [...],            # R: N retrains on D_r (KLOM's reference, the challenge's "retrained")
     "independent": [...],       # R′: N more, for the Retrain (independent) row (PROTOCOL §8.7.0)
     "rows": {"<row>": {"klom": [...],        # run i of the method from original O_i
                        "challenge": [...]}},  # N runs of the method from O_0 [NE]
     "lira": {"<row>": {"halves": [[data indices of H_k], ...],
                        "runs": [{"half": k, "forget": [data indices of D_f^{k,m}], "outputs": "<key>"}]}}}

"No unlearning" is a row like any other: its ``klom`` the originals O_i, its ``challenge`` N copies of O_0.
Every value carries its N and resolution (ε_max; the KLOM floor is the Retrain (independent) row).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..errors import ConfigError
from . import challenge, klom, outputs, ulira

if TYPE_CHECKING:
    from ..store import Store

KLOM_SPLITS = ("retain", "forget", "test")  # D_r, D_f, D_test′ (PROTOCOL §8.7.1)
OPTIONS = {"binning": ("inclusive", "reference"), "utility": ("unclipped", "capped"),
           "variance": ("per_example", "fixed")}  # register #57, #60, and §8.7.3's variance


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``-o KEY=VALUE`` of ``evaluate``: the §8.7 options, each checked against its choices."""
    from ..errors import unknown

    out = {k: v[0] for k, v in OPTIONS.items()}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"-o {pair!r}: write KEY=VALUE, e.g. -o binning=reference")
        if key not in OPTIONS:
            raise unknown("evaluate option", key, OPTIONS)
        if value not in OPTIONS[key]:
            raise ConfigError(f"-o {key}={value}: {key} is one of {', '.join(OPTIONS[key])}")
        out[key] = value
    return out


class _Models:
    """Outputs of the spec's models, loaded once each, over the manifest's rows."""

    def __init__(self, store: "Store", manifest_hash: str, base: Path):
        self.store, self.mh, self.base = store, manifest_hash, base
        man = store.get_json("manifest", manifest_hash)
        if man is None:
            raise ConfigError(f"the store has no index manifest {manifest_hash[:12]}: pass the --store the ensembles "
                              "were built in")
        self.manifest = man
        self.rows = outputs.examples(man)
        self.labels = outputs.load_labels(store, manifest_hash) if store.has(
            outputs.LABELS_KIND, outputs.labels_key(store, manifest_hash)) else None
        self._cache: dict[str, dict] = {}

    def key_of(self, entry: str) -> str:
        if not isinstance(entry, str):
            raise ConfigError(f"an ensemble member must be a store key or a run.json path, not {entry!r}")
        if not entry.endswith(".json"):
            return entry
        from ..report.records import read_record

        rec = read_record(self.base / entry)
        key = (rec.get("outputs") or {}).get("unlearned")
        if not key:
            raise ConfigError(f"{entry} names no cached outputs (a record from before issue 18, or its model "
                              "diverged): run it again")
        return key

    def load(self, entry: str) -> dict:
        key = self.key_of(entry)
        if key not in self._cache:
            if not self.store.has(outputs.KIND, key):
                raise ConfigError(f"the store has no cached outputs {key[:12]}: pass the --store they were written to")
            got = outputs.load(self.store, key, self.mh)
            if len(got["phi"]) != len(self.rows):
                raise ConfigError(f"outputs {key[:12]} hold {len(got['phi'])} examples; manifest {self.mh[:12]} has "
                                  f"{len(self.rows)}: they belong to another manifest")
            self._cache[key] = got
        return self._cache[key]

    def split(self, entries: list[str], split: str) -> dict[str, np.ndarray]:
        if not entries:
            raise ConfigError("an ensemble of the spec is empty")
        cols = outputs.columns(self.manifest, split, self.rows)
        got = [self.load(e) for e in entries]
        out = {"phi": np.stack([g["phi"][cols] for g in got]), "pred": np.stack([g["pred"][cols] for g in got])}
        if self.labels is not None:
            out["acc"] = outputs.accuracy(out["pred"], self.labels[cols])
        return out


def _challenge(models: _Models, runs: list[str], oracle: list[str], utility: str) -> dict:
    fq = challenge.forgetting_quality(models.split(runs, "forget")["phi"], models.split(oracle, "forget")["phi"])
    eps = fq.pop("epsilons")
    out: dict[str, Any] = {**fq, "epsilon_median": float(np.median(eps)) if eps.size else None}
    if models.labels is not None:  # RA, TA: Acc D_r and Acc D_test′ averaged over each ensemble [NE main.py]
        ra_u, ra_r = (float(models.split(e, "retain")["acc"].mean()) for e in (runs, oracle))
        ta_u, ta_r = (float(models.split(e, "test")["acc"].mean()) for e in (runs, oracle))
        out.update(challenge.score(fq["fq"], ra_u, ra_r, ta_u, ta_r, utility=utility))
        out.update({"ra_u": ra_u, "ra_r": ra_r, "ta_u": ta_u, "ta_r": ta_r})
    return out


def _klom(models: _Models, runs: list[str], oracle: list[str], binning: str) -> dict:
    splits = [s for s in KLOM_SPLITS if s in models.manifest["splits"]]
    u = {s: models.split(runs, s)["phi"] for s in splits}
    o = {s: models.split(oracle, s)["phi"] for s in splits}
    out: dict[str, Any] = {"n_unlearned": len(runs), "n_oracle": len(oracle), "binning": binning,
                           "direction": "unlearned_oracle", "splits": {}}
    for s in splits:
        one = klom.klom_splits(u[s], o[s], {s: np.arange(u[s].shape[1])}, binning=binning)
        out["splits"][s] = one["splits"][s]
    return out


def _lira(models: _Models, spec: Mapping, variance: str) -> dict:
    pool = np.asarray(models.manifest["splits"]["train"], dtype=np.int64)  # D_pool = D_train (§8.7.3)
    halves = spec.get("halves") or []
    runs = spec.get("runs") or []
    if not halves or not runs:
        raise ConfigError("a lira entry needs 'halves' and 'runs'")

    def mask(idx) -> np.ndarray:  # data indices -> a mask over D_pool's columns
        idx = np.unique(np.asarray(idx, dtype=np.int64))
        m = np.isin(pool, idx)
        if m.sum() != len(idx):
            raise ConfigError("a lira half or forget set holds an example outside D_train")
        return m

    in_half = np.stack([mask(h) for h in halves])
    phi = np.stack([models.split([r["outputs"]], "train")["phi"][0] for r in runs])
    half = np.asarray([int(r["half"]) for r in runs])
    forget = np.stack([mask(r["forget"]) for r in runs])
    try:
        got = ulira.ulira(phi, half, in_half, forget, variance=variance)
    except ValueError as e:
        raise ConfigError(f"lira: {e}") from None
    per = got.pop("per_example_auc")
    got["per_example_auc_median"] = float(np.nanmedian(per)) if np.isfinite(per).any() else None
    return got


def evaluate(store: "Store", spec: Mapping, *, base: str | Path = ".", options: Mapping[str, str] | None = None) -> dict:
    """Every metric the spec has the ensembles for, per row, and the Retrain (independent) row."""
    opts = {**{k: v[0] for k, v in OPTIONS.items()}, **(options or {})}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("manifest"), str):
        raise ConfigError("an ensemble spec is a JSON object with a 'manifest' (the index manifest's hash)")
    models = _Models(store, spec["manifest"], Path(base))
    oracle = list(spec.get("oracle") or [])
    result: dict[str, Any] = {"manifest": spec["manifest"], "options": opts, "rows": {}}
    rows = dict(spec.get("rows") or {})
    if spec.get("independent"):
        rows["Retrain (independent)"] = {"klom": spec["independent"], "challenge": spec["independent"]}
    for name, row in rows.items():
        out: dict[str, Any] = {}
        for metric in ("klom", "challenge"):
            if row.get(metric) and not oracle:
                raise ConfigError(f"row {name!r}: {metric} needs the spec's 'oracle' ensemble")
        if row.get("klom"):
            out["klom"] = _klom(models, list(row["klom"]), oracle, opts["binning"])
        if row.get("challenge"):
            out["challenge"] = _challenge(models, list(row["challenge"]), oracle, opts["utility"])
        result["rows"][name] = out
    for name, lira_spec in (spec.get("lira") or {}).items():
        result["rows"].setdefault(name, {})["ulira"] = _lira(models, lira_spec, opts["variance"])
    return result


def table(result: Mapping) -> str:
    """The result as the board's columns, one line per row: KLOM P95 per split, FQ, both utility ratios and
    the score, U-LiRA AUC / |AUC − 0.5| / TPR@1%FPR; each with its N (or K×M) and resolution."""
    def f(v, d=3):
        return "—" if v is None else f"{v:.{d}f}"

    lines = []
    for name, row in result["rows"].items():
        parts = [name]
        if "klom" in row:
            k = row["klom"]
            parts.append("KLOM P95 " + " ".join(f"{s} {f(v['p95'], 2)}" for s, v in k["splits"].items())
                         + f" (N={k['n_unlearned']})")
        if "challenge" in row:
            c = row["challenge"]
            parts.append(f"FQ {f(c['fq'])} RA {f(c.get('ra_ratio'))} TA {f(c.get('ta_ratio'))} score "
                         f"{f(c.get('score'))} (N={c['n_unlearned']}, ε_max={c['epsilon_max']})")
        if "ulira" in row:
            u = row["ulira"]
            parts.append(f"U-LiRA AUC {f(u['auc'])} |AUC-0.5| {f(u['auc_dev'])} TPR@1%FPR "
                         f"{f(u['tpr_at_0.01_fpr'])} (K×M={u['K']}×{u['M']})")
        lines.append("  ".join(parts))
    return "\n".join(lines)
