"""scikit-learn's bundled digits (1,797 8x8 images): the embedded, download-free scenario.

PROTOCOL §1.1: no official split, so test = ⌈0.2·1,797⌉ = 360 and val = ⌈0.125·1,437⌉ = 180,
both stratified, drawn with split seed 0. Model cnn-s and its recipe: §2.1; pool: §6.3.
digits-class is the embedded default (PROTOCOL §10.2 #47); digits-10pct is a smoke/CI scenario:
|D_f| = 125, so one sample is 0.8 points, and its board says it cannot rank methods.
"""
from __future__ import annotations

from unlearnbench import ClassifierScenario, RawData, Recipe, classifier_pool, hookimpl
from unlearnbench.data import fingerprint


# The fine-tune pool (PROTOCOL §6.3): SGD momentum 0.9, constant lr, BN in train mode,
# epochs x wd x label smoothing = 27 members. v2: each image translated by ±1 px (8x8 digits), so the
# ls = 0 members move off the original (which fits D_f at ~0 loss); v1 trained them unaugmented
# (`pool.augment=v1`).
POOL = classifier_pool("default", 0.01, 32, (20, 30, 40), "translate1", "[OURS], [PILOT]", v1_augment="none")


class Digits(ClassifierScenario):
    title = "scikit-learn digits, cnn-s; CPU, no download"
    arch = "cnn-s"
    in_channels = 1
    val_frac = 0.125  # ⌈0.125·1,437⌉ = 180 [PROTOCOL §1.1]
    test_frac = 0.2
    threads = 1  # PROTOCOL §10.1: digits piloted on 1 thread
    recipe = Recipe(epochs=60, batch=32, lr=0.05, momentum=0.9, wd=5e-4, schedule="cosine")  # [OURS], [PILOT]
    search_baseline_lr = True  # reference lrs were tuned for ResNet-18/CIFAR-10 [PROTOCOL §7.3]
    pools = {"default": POOL}

    def load_raw(self, data_root: str | None) -> RawData:
        import numpy as np
        import torch
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixel values 0..16 -> [0, 1]
        y = torch.tensor(d.target, dtype=torch.long)
        fp = fingerprint(np.ascontiguousarray(d.images, dtype=np.float64).tobytes(),
                         np.ascontiguousarray(d.target, dtype=np.int64).tobytes())
        return RawData(x=x, y=y, train_pool=np.arange(len(y)), test=None, fingerprint=fp, num_classes=10,
                       source="sklearn.datasets.load_digits")


# PROTOCOL §10.2 #47: digits-class is the embedded default; digits-10pct stays as a smoke scenario.
SMOKE = ("|D_f| = 125, so one forget sample is 0.8 points of Acc D_f, and on its protocol-1 board no method beat "
         "\"no unlearning\" beyond seed noise. It checks that the pipeline runs; rank methods on digits-class or "
         "fmnist (PROTOCOL §10.2 #47).")


class DigitsSmoke(Digits):
    smoke = SMOKE


@hookimpl
def register_scenarios(register):
    register(DigitsSmoke("digits-10pct", "random"))
    register(Digits("digits-class", "class"))
