"""Issue 16 acceptance 8, from records: where rule (c)'s λ* lands under the v2 target (the original's
Acc D_val) and the v1 target (the edited model's), against the λ of least Avg. Gap to Retrain.

    python benchmarks/target_check.py V2_RUNS EDITED_RUNS --out benchmarks/results/target_check.txt

V2_RUNS holds protocol-2 records (``selection.target=original``, with the oracle rules of ``selection.also``),
EDITED_RUNS the same merges run with ``-o selection.target=edited -o selection.also=none`` on the same store
(same pool, same grid). The least-gap λ is rule (b)'s choice on the v2 curve: Avg. Gap over Acc D_r on the
fixed 5,000 of D_r, Acc D_f, Acc D_test and MIA on the §5(d) subsamples, at every λ (exactly: the pruned points
are provably worse). Each λ's full §8 Avg. Gap is the one its record measured at its choice. Only the λs the
records chose are scored in full; the test-side gap at every λ (``selection.diagnostic=true``) is not in them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def records(root: Path) -> dict[tuple[str, str, int], dict]:
    out = {}
    for p in sorted(root.rglob("run.json")):
        r = json.loads(p.read_text())
        out[(r["scenario"], r["method"], int(r["trial"]))] = r
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("v2", type=Path)
    ap.add_argument("edited", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    v2, ed = records(args.v2), records(args.edited)
    lines = [f"# python benchmarks/target_check.py {args.v2} {args.edited}", "",
             "| scenario | method | trial | λ*(b) least gap | its Avg. Gap | λ*(c) v2 target | Δλ | its Avg. Gap | "
             "λ*(c) v1 target | Δλ | its Avg. Gap |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(v2):
        r = v2[key]
        b = r.get("by_rule", {}).get("oracle_avg_gap")
        if not b or not b.get("selected") or "lambda" not in b or r.get("lambda") is None:
            continue
        e = ed.get(key)
        if e is not None and e["config"]["selection"].get("target") != "edited":
            raise SystemExit(f"{key}: the edited run's record has selection.target={e['config']['selection'].get('target')}")
        if r["config"]["selection"].get("target") != "original":
            raise SystemExit(f"{key}: the v2 record has selection.target={r['config']['selection'].get('target')}")
        lb, lc = float(b["lambda"]), float(r["lambda"])
        row = [*map(str, key), f"{lb:.2f}", f"{b['gap']['avg_gap']:.2f}", f"{lc:.2f}", f"{lc - lb:+.2f}",
               f"{r['gap']['avg_gap']:.2f}"]
        if e is not None:
            le = float(e["lambda"])
            row += [f"{le:.2f}", f"{le - lb:+.2f}", f"{e['gap']['avg_gap']:.2f}"]
        else:
            row += ["not run", "–", "–"]
        lines.append("| " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
