"""Ensemble-based evaluation (PROTOCOL §8.7): metrics that compare the distribution of a per-example output
over many unlearning runs with its distribution over many retrained models.

Every metric here is a pure numpy function of cached per-example margins φ (``margin``), so it can be
added or corrected without retraining: KLOM (``klom``), the NeurIPS 2023 challenge's forgetting quality
(``challenge``) and U-LiRA (``ulira``). No selection rule reads them (§8.7: final-evaluation metrics).
"""
from __future__ import annotations
