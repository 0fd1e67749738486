"""Host-side cost of the CLIP RandAugment pool's augmentation (PROTOCOL §6.1) per training batch.

The pool's recipe augments on the host, one image at a time in PIL (timm's RandAugment), while
the GPU waits: this measures how long one batch of 128 at 224 px takes, for the cheap TA
transform (clip_rrc) and for the RandAugment pool at N = 1 and N = 3 (M = 10).
Usage: python benchmarks/randaug_bench.py [--reps 5]
"""
from __future__ import annotations

import argparse
import time

import torch

from unlearnbench.augment import recipe_augmentation
from unlearnbench.recipe import Recipe


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.randint(0, 256, (args.batch, 3, 224, 224), dtype=torch.uint8)
    base = Recipe(epochs=1, batch=args.batch, lr=1e-5)
    cases = [("clip_rrc (TA config)", base.with_(augment="clip_rrc")),
             ("clip_randaug, N=1 M=10", base.with_(augment="clip_randaug", randaug_n=1, randaug_m=10)),
             ("clip_randaug, N=3 M=10", base.with_(augment="clip_randaug", randaug_n=3, randaug_m=10))]
    for label, rec in cases:
        aug = recipe_augmentation(rec)
        g = torch.Generator().manual_seed(0)
        aug(x[:8], g)  # warm-up
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            aug(x, g)
            times.append(time.perf_counter() - t0)
        times.sort()
        print(f"{label:26s} median {times[len(times) // 2]:.3f} s / batch of {args.batch} "
              f"({1e3 * times[len(times) // 2] / args.batch:.2f} ms / image), 1 thread")


if __name__ == "__main__":
    main()
