"""The paper's CLIP numbers as data (PROTOCOL §9.2): each data set's board rows.

All values are %. Acc D_r is the control (ImageNet val) and Acc D_f the forget data set's test split
(§8.4); one run each, no std, no Avg. Gap (there is no Retrain). Labels keep the paper's marks:
``*`` borrowed from the TA/TTA papers, ``†`` single best after a search, ``‡`` Greedy.
"""
from __future__ import annotations

from unlearnbench import paper_table

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
