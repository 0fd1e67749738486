"""The CLIP fine-tune pools of PROTOCOL §6.1–6.2 as data, and each forget data set's epochs.

A pool is exactly its listed configs, in canonical order (the Cartesian product of the columns,
leftmost outermost); ``ClipNegation`` sets each pool's epochs from its data set's table.
"""
from __future__ import annotations

from unlearnbench import PoolGrid, Recipe

# §2.2 / §6.1–6.2: AdamW lr 1e-5, wd 0.1, 500-step warmup then cosine, clip 1.0, batch 128.
# Epochs come from the data set's table (RandAugment or TA), so `epochs` is set per data set.
_CLIP = Recipe(epochs=0, batch=128, lr=1e-5, momentum=0.0, wd=0.1, schedule="cosine", optimizer="adamw",
               augment="clip_rrc", warmup_steps=500, grad_clip=1.0)
_LR4 = (1e-4, 5e-5, 1e-5, 5e-6)  # the D1 caption's list; [P T D3]'s list has a duplicate typo
CLIP_POOLS: dict[str, PoolGrid] = {
    "pool1_randaug": PoolGrid("pool1_randaug", _CLIP.with_(augment="clip_randaug"),
                              (("randaug_n", (1, 2, 3)), ("randaug_m", tuple(range(1, 11)))), "[P App. A], [NM]"),
    "pool2": PoolGrid("pool2", _CLIP, (("lr", _LR4), ("wd", (0.01, 0.1)), ("label_smoothing", (0.0, 0.1))),
                      "[P T D1]"),
    "pool3": PoolGrid("pool3", _CLIP, (("lr", _LR4), ("wd", (0.01, 0.1))), "[P T D3]"),
    "pool4": PoolGrid("pool4", _CLIP, (("lr", (1e-5, 5e-6, 5e-5)), ("wd", (0.01, 0.1))), "[P T D3]"),
    "pool5": PoolGrid("pool5", _CLIP.with_(augment="clip_randaug"),
                      (("randaug_n", (1, 2)), ("randaug_m", (5, 10)), ("lr", _LR4), ("wd", (0.01, 0.1)),
                       ("label_smoothing", (0.0, 0.1))), "[P T D3]"),
    "pool6": PoolGrid("pool6", _CLIP.with_(augment="clip_randaug"),
                      (("randaug_n", (1, 2)), ("randaug_m", (5, 10)), ("lr", _LR4), ("wd", (0.01, 0.1))),
                      "[P T D3]"),
    # 36 grid points but "8 models": 8 drawn without replacement from the `pool` stream [OURS]
    "pool7": PoolGrid("pool7", _CLIP.with_(augment="clip_randaug"),
                      (("randaug_n", (1, 2)), ("randaug_m", (1, 5, 10)), ("lr", (1e-5, 5e-6, 1e-6)),
                       ("wd", (0.01, 0.1))), "[P T D2]", draw=8),
    "ta_paper": PoolGrid("ta_paper", _CLIP, (), "[NM], [TTA]: one run of the TA config, no augmentation"),
}

# Epochs per forget data set [P App. A], [NM]: RandAugment pools, and the no-augmentation TA config.
CLIP_EPOCHS_RANDAUG = {"Cars": 70, "DTD": 100, "EuroSAT": 40, "GTSRB": 40, "MNIST": 30, "RESISC45": 40,
                       "SUN397": 40, "SVHN": 30}
CLIP_EPOCHS_TA = {"Cars": 35, "DTD": 76, "EuroSAT": 12, "GTSRB": 11, "MNIST": 5, "RESISC45": 15, "SUN397": 14,
                  "SVHN": 4}
