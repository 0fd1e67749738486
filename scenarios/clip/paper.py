"""The paper's CLIP numbers as data (PROTOCOL §9.1, §9.2): each data set's board rows, and the rows of
the ``clip`` board, [P T1]'s mean over the eight data sets per architecture.

All values are %. Acc D_r is the control (ImageNet val) and Acc D_f the forget data set's test split
(§8.4); one run each, no std, no Avg. Gap (there is no Retrain). Labels keep the paper's marks:
``*`` borrowed from the TA/TTA papers, ``†`` single best after a search, ``‡`` Greedy.
"""
from __future__ import annotations

from unlearnbench import ScenarioGroup, paper_table

# The eight forget data sets, in [P T1]'s (alphabetical) column order: (our name, the paper's header)
DATASETS = (("cars", "Cars"), ("dtd", "DTD"), ("eurosat", "EuroSAT"), ("gtsrb", "GTSRB"), ("mnist", "MNIST"),
            ("resisc45", "RESISC45"), ("sun397", "SUN397"), ("svhn", "SVHN"))

# [P T B1, B6, C1] ViT-B/32, standard TA (PROTOCOL §9.2): (method, label, Acc D_f / Acc D_r per data set in
# DATASETS order)
PER_DATASET_B32 = (
    ("task-arithmetic", "TA single best†",
     "29.0/59.9 30.4/60.8 10.4/60.9 9.1/60.9 21.2/60.6 30.7/60.8 50.6/59.9 7.6/60.9"),
    ("uniform", "Uniform (= All)", "31.7/60.4 29.6/60.6 8.9/60.8 7.0/60.0 20.5/61.4 23.8/60.1 51.4/60.5 7.3/60.7"),
    ("greedy", "Greedy‡", "31.0/60.3 29.5/60.6 9.4/60.8 8.4/60.5 21.3/62.0 28.3/60.7 51.4/60.4 7.2/60.7"),
    ("ties", "TIES", "34.0/60.3 33.1/61.3 11.6/61.1 10.2/61.3 26.1/62.4 33.4/61.0 53.8/60.3 7.5/60.9"),
    ("magmax", "MagMax", "35.6/60.6 31.9/61.1 10.5/60.7 8.4/60.8 20.1/60.7 30.7/60.6 55.4/61.1 9.3/62.0"),
    ("negmerge", "NegMerge", "27.4/60.4 27.2/60.5 7.9/60.2 6.2/60.0 20.5/59.9 22.6/60.5 47.2/60.6 7.2/60.9"),
    ("conflict", "Conflict", "40.2/60.2 31.9/60.3 11.1/60.7 9.1/60.6 24.0/61.9 32.3/60.2 58.3/60.9 8.8/60.6"),
    ("negmerge-min", "NegMerge (min)", "26.5/59.9 27.9/60.6 10.3/60.8 8.3/60.7 25.2/61.0 20.1/60.0 46.8/60.2 8.2/61.0"),
    ("negmerge-max", "NegMerge (max)", "28.2/60.3 27.4/60.4 10.7/60.9 7.5/60.4 28.7/60.2 26.0/61.0 48.3/60.7 7.3/60.8"),
)
PER_DATASET_SOURCE = "P T B1, B6, C1 (ViT-B/32)"


def _per_dataset() -> dict[str, dict[str, tuple[float, float]]]:
    """{method: {data set: (Acc D_f, Acc D_r)}} of PER_DATASET_B32."""
    out = {}
    for method, _, cells in PER_DATASET_B32:
        pairs = [tuple(float(v) for v in c.split("/")) for c in cells.split()]
        out[method] = {name: pair for (name, _), pair in zip(DATASETS, pairs, strict=True)}
    return out


def dataset_paper(dataset: str) -> dict:
    """One data set's board rows (``Scenario.paper``): its column of [P T B1, B6, C1]."""
    per = _per_dataset()
    return paper_table(PER_DATASET_SOURCE, [(m, label, "forget+val", per[m][dataset][1], per[m][dataset][0], None,
                                             None, None) for m, label, _ in PER_DATASET_B32])


# [P T1] (PROTOCOL §9.1): per architecture, (block, method, label, Acc D_f, Acc D_r); None: not reported
# (the paper has no ViT-L/14 Linear rows). Its "Merge time" column is the authors' GPU's, not a board column.
TABLE1 = {
    "vit-b-32": (("", "original", "Pre-trained (zero-shot)", 48.13, 63.33),
                 ("TA", "task-arithmetic", "Paper number*", 24.00, 60.90),
                 ("TA", "task-arithmetic", "Single best†", 23.63, 60.60),
                 ("TA", "uniform", "Uniform", 22.50, 60.55), ("TA", "greedy", "Greedy‡", 23.31, 60.75),
                 ("TA", "ties", "TIES", 26.21, 61.08), ("TA", "magmax", "MagMax", 25.24, 60.95),
                 ("TA", "negmerge", "NegMerge", 20.76, 60.36),
                 ("Linear TA", "linear-task-arithmetic", "Paper number*", 10.90, 60.80),
                 ("Linear TA", "linear-task-arithmetic", "Single best†", 8.88, 60.16),
                 ("Linear TA", "uniform", "Uniform", 9.12, 60.47), ("Linear TA", "greedy", "Greedy‡", 8.73, 60.27),
                 ("Linear TA", "ties", "TIES", 10.66, 60.38), ("Linear TA", "magmax", "MagMax", 11.33, 60.67),
                 ("Linear TA", "negmerge", "NegMerge", 8.03, 60.58)),
    "vit-b-16": (("", "original", "Pre-trained (zero-shot)", 55.49, 68.32),
                 ("TA", "task-arithmetic", "Paper number*", 21.30, 65.40),
                 ("TA", "task-arithmetic", "Single best†", 20.64, 64.04),
                 ("TA", "uniform", "Uniform", 21.51, 64.60), ("TA", "greedy", "Greedy‡", 21.34, 64.54),
                 ("TA", "ties", "TIES", 23.78, 64.72), ("TA", "magmax", "MagMax", 24.45, 64.78),
                 ("TA", "negmerge", "NegMerge", 19.24, 64.54),
                 ("Linear TA", "linear-task-arithmetic", "Paper number*", 11.30, 64.80),
                 ("Linear TA", "linear-task-arithmetic", "Single best†", 6.92, 64.62),
                 ("Linear TA", "uniform", "Uniform", 6.84, 65.26), ("Linear TA", "greedy", "Greedy‡", 6.80, 64.72),
                 ("Linear TA", "ties", "TIES", 8.44, 65.12), ("Linear TA", "magmax", "MagMax", 8.65, 65.17),
                 ("Linear TA", "negmerge", "NegMerge", 6.60, 65.40)),
    "vit-l-14": (("", "original", "Pre-trained (zero-shot)", 65.19, 75.54),
                 ("TA", "task-arithmetic", "Paper number*", 19.00, 72.90),
                 ("TA", "task-arithmetic", "Single best†", 19.17, 72.09),
                 ("TA", "uniform", "Uniform", 18.10, 71.91), ("TA", "greedy", "Greedy‡", 17.71, 71.99),
                 ("TA", "ties", "TIES", 22.70, 72.41), ("TA", "magmax", "MagMax", 21.71, 72.55),
                 ("TA", "negmerge", "NegMerge", 17.32, 72.08)),
}
TABLE1_SOURCE = "P T1; per data set: P T B1 (ViT-B/32, TA block only)"
ARCH_LABELS = (("vit-b-32", "ViT-B/32"), ("vit-b-16", "ViT-B/16"), ("vit-l-14", "ViT-L/14"))
F, R = "acc_forget_test", "acc_control_test"  # the records' Acc D_f and Acc D_r (SCORING, §8.4)


def _table1_rows() -> tuple[dict, ...]:
    """TABLE1 as ScenarioGroup.paper rows; the ViT-B/32 TA rows get [P T B1]'s per-data-set cells (the
    paper gives no per-data-set Pre-trained or paper-number row)."""
    per = _per_dataset()
    out = []
    for arch, rows in TABLE1.items():
        for block, method, label, df, dr in rows:
            cells = {}
            if arch == "vit-b-32" and block == "TA" and "paper number" not in label and method in per:
                cells = {f"clip-{d}": {F: v[0], R: v[1]} for d, v in per[method].items()}
            out.append({"split": arch, "label": f"{block}: {label}" if block else label, "method": method,
                        "cells": cells, "mean": {F: df, R: dr}})
    return tuple(out)


CLIP_GROUP = ScenarioGroup(
    name="clip", title="CLIP dataset negation: the eight forget data sets and their mean ([P T1]'s shape)",
    members=tuple((f"clip-{d}", header) for d, header in DATASETS),
    columns=((F, "Acc Df"), (R, "Acc Dr")), split_by="scenario.arch", split_labels=ARCH_LABELS,
    paper=_table1_rows(), paper_source=TABLE1_SOURCE, reference="Pre-trained (zero-shot)",
    legend=("Mean ± std over seeds. Acc Df (lower is better) is the forget data set's test split, Acc Dr ImageNet "
            "val, the control (PROTOCOL §8.4); rows are ordered by the mean Acc Df, as [P T1] bolds the lowest. One "
            "table per CLIP architecture, the paper's rows below it."))
