"""CLIP dataset negation (PROTOCOL §1.3, §2.2): forget a whole data set, keep ImageNet.

θ_0 is a pretrained CLIP image encoder with frozen zero-shot heads (``model.py``).
There is no original training and no Retrain: a run reports Acc D_f (the forget data set's
official test split) and Acc D_r (ImageNet val, the control), and λ is chosen by the
control-threshold rule on D_f^val and ImageNetVal, a 5,000-image split of ImageNet train
(§5 (a)). Only methods that read D_f and val apply: the merge family and Task Arithmetic.

Splits, by the [NM] rule: D_f^val is 10% of the data set's train split, at most 5,000, drawn
by torch.randperm with generator seed 0 in the order the files are read; D_f^train is the
rest. The drawn indices are stored in the manifest, never regenerated (§1.3).

The eight forget data sets of [P T1], each in its native (torchvision / [TTA]) layout: MNIST (IDX),
SVHN (.mat), EuroSAT (the [TTA] train/val/test class folders; its val split is predefined),
Cars (the Stanford release with its devkit .mat files), DTD (the release's split 1, as [TTA]
uses it), GTSRB (the .ppm train class folders and the test CSV), RESISC45 (the class folders and
[TTA]'s split lists) and SUN397 (partition 01, from the release or [TTA]'s prepared folders).
ImageNet (the control) is read from the standard class-folder layout.

Storage: a data set is kept in memory as uint8 at its native size (MNIST 28 × 28) or, for
photos, as CLIP's eval view (Resize 224 bicubic + CenterCrop 224); the model does the rest of
the preprocessing. Train-time crops are taken from that stored image [OURS].

The package: ``datasets`` (the loaders), ``model`` (the encoder and its heads), ``pools`` (the
§6.1–6.2 pools and epoch tables), ``augment`` (the pools' crops), ``paper`` (the paper's rows and
the ``clip`` board's group, [P T1]); this module holds the scoring, the task and the scenario.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from unlearnbench import Choice, ConfigError, DataNotFound, RawData, Scenario, Scoring, Task, hookimpl
from unlearnbench.data import data_roots
from unlearnbench import sha256_hex, stream_seed

from .augment import AUGMENTATIONS
from .datasets import (CARS_TEMPLATES, DTD_TEMPLATES, EUROSAT_CLASSES, EUROSAT_TEMPLATES, GTSRB_TEMPLATES,
                       MNIST_CLASSES, MNIST_TEMPLATES, RESISC45_TEMPLATES, SUN397_TEMPLATES, load_cars, load_dtd,
                       load_eurosat, load_gtsrb, load_imagenet_control, load_mnist, load_resisc45, load_sun397,
                       load_svhn, nm_val_split)
from .paper import CLIP_GROUP, dataset_paper
from .pools import CLIP_EPOCHS_RANDAUG, CLIP_EPOCHS_TA, CLIP_POOLS

# -- the task and the scenario -------------------------------------------------------------------

# How dataset negation is scored (PROTOCOL §8.4, §5(a)): accuracies only, no MIA and no Retrain
# (so no Avg. Gap). The board's Acc Dr is the control set (ImageNet val) and its Acc Df the forget set's
# test split, the paper's columns of those names [P T1], ranked by the lowest Acc Df. The control
# threshold rule reads the forget and control val splits.
SCORING = Scoring(
    report=("forget_test", "control_test", "forget_val", "control_val"), mia=False, has_oracle=False,
    board=(("acc_retain", "acc_control_test"), ("acc_forget", "acc_forget_test")), rank="acc_forget",
    legend=("Mean ± std over seeds. CLIP dataset negation (PROTOCOL §8.4): Acc Dr is ImageNet val (the control), "
            "Acc Df the forget data set's test split; there is no Retrain, so no Avg. Gap. **Bold** = lowest Acc Df, "
            "separated from every other row by more than seed noise; ≈ = within noise of the lowest."),
    summary=(("acc_forget_test", "Acc Df"), ("acc_control_test", "Acc Dr"), ("acc_forget_val", "Acc Df val"),
             ("acc_control_val", "Acc Dc val")),
    control=("acc_forget_val", "acc_control_val"),
    member_points=("acc_control_test", "acc_forget_test"),
    diagnostic=("acc_forget_test", "acc_control_test"),
    # D_f^train / D_f^val / D_f^test, control val / test; `forget` and `val` alias D_f^train and D_f^val
    split_roles=MappingProxyType({
        "forget_train": frozenset({"forget"}), "forget_val": frozenset({"val"}), "forget_test": frozenset({"test"}),
        "control_val": frozenset({"val"}), "control_test": frozenset({"test"}),
        "forget": frozenset({"forget"}), "val": frozenset({"val"})}),
)


class ClipTask(Task):
    """A trial of CLIP dataset negation. Indices address one virtual array: the forget data set's
    rows first, then the control's (offset by ``n_forget``)."""

    control: RawData
    clip_arch: str

    def tensors(self, split: str):
        import torch

        idx = torch.as_tensor(self.indices(split), dtype=torch.long)
        n = len(self.data.y)
        if len(idx) and bool((idx >= n).any()):
            if bool((idx < n).any()):
                raise ConfigError(f"split {split!r} mixes forget and control rows")
            idx = idx - n
            return self.control.x[idx], self.control.y[idx]
        return self.data.x[idx], self.data.y[idx]

    def detached(self, splits: list[str]) -> "ClipTask":
        # The two data sets differ in image size, so the forget-side splits are detached into ``data``
        # and the control-side ones into ``control`` (only their rows: no ImageNet images are shipped
        # to a worker that does not read them), keeping the one-virtual-array indexing.
        import dataclasses

        import torch

        n = len(self.data.y)
        known = [s for s in splits if s in self.manifest["splits"]]
        side = {s: bool(len(self.indices(s))) and min(self.indices(s)) >= n for s in known}
        out = Task.detached(self, [s for s in known if not side[s]])
        rows, at = [], len(out.data.y)
        for s in (s for s in known if side[s]):
            idx = torch.as_tensor(self.indices(s), dtype=torch.long) - n
            out.manifest["splits"][s] = list(range(at, at + len(idx)))
            at += len(idx)
            rows.append(idx)
        take = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
        out.control = dataclasses.replace(self.control, x=self.control.x[take], y=self.control.y[take],
                                          train_pool=None, test=None, val=None)
        return out

    def route(self, model, split: str | None) -> None:
        if hasattr(model, "head"):
            model.head = "control" if split is not None and split.startswith("control") else "forget"

    def new_model(self):
        from .model import clip_classifier

        return clip_classifier(self.clip_arch, self.data.num_classes, self.control.num_classes)


class ControlTemplates(Choice):
    openai = "openai"
    simple = "simple"


@dataclass
class ClipConfig:
    arch: str = field(default="vit-b-32", metadata={
        "help": "CLIP image encoder: vit-b-32, vit-b-16, vit-l-14 (tiny: a 2-layer ViT for tests)",
        "source": "PROTOCOL §2.2"})
    weights: str = field(default="", metadata={
        "help": "the encoder's state dict (.safetensors or .pt/.bin); empty: "
                "<data-root>/clip/<arch>-openai.safetensors; 'random': random init (smoke tests only, the heads "
                "are meaningless)", "source": "PROTOCOL §2.2"})
    control_templates: ControlTemplates = field(default=ControlTemplates.openai, metadata={
        "help": "ImageNet prompt set for the control head: openai (80) or simple (open_clip's 10)",
        "source": "[TTA], PROTOCOL §2.2"})


@dataclass
class DatasetSpec:
    key: str  # the name in the epoch tables
    load: object
    classnames: tuple | None  # None: the loaded data set names its classes (Cars: its devkit)
    templates: tuple


FORGET_SETS = {
    "mnist": DatasetSpec("MNIST", load_mnist, MNIST_CLASSES, MNIST_TEMPLATES),
    "svhn": DatasetSpec("SVHN", load_svhn, MNIST_CLASSES, MNIST_TEMPLATES),  # [TTA]: the MNIST prompt
    "eurosat": DatasetSpec("EuroSAT", load_eurosat, tuple(EUROSAT_CLASSES[k] for k in sorted(EUROSAT_CLASSES)),
                           EUROSAT_TEMPLATES),
    "cars": DatasetSpec("Cars", load_cars, None, CARS_TEMPLATES),
    "dtd": DatasetSpec("DTD", load_dtd, None, DTD_TEMPLATES),
    # the loaders name the classes: GTSRB by ClassId, RESISC45 and SUN397 by folder (PROTOCOL §1.3)
    "gtsrb": DatasetSpec("GTSRB", load_gtsrb, None, GTSRB_TEMPLATES),
    "resisc45": DatasetSpec("RESISC45", load_resisc45, None, RESISC45_TEMPLATES),
    "sun397": DatasetSpec("SUN397", load_sun397, None, SUN397_TEMPLATES),
}


class ClipNegation(Scenario):
    """Forget one data set from a pretrained CLIP encoder, with ImageNet as the control (§1.3)."""

    Config = ClipConfig
    suite_defaults = {"selection": {"name": "control_threshold", "grid": "unit"}}  # λ in {0, ..., 1} [NM], [TTA]
    threads = 8

    group = CLIP_GROUP  # the clip board: the eight data sets side by side and their mean [P T1], §8.4

    def __init__(self, dataset: str, paper: dict | None = None):
        self.dataset = dataset
        self.paper = paper
        self.spec = FORGET_SETS[dataset]
        self.name = f"clip-{dataset}"
        self.title = f"CLIP dataset negation: {self.spec.key}, ImageNet control; GPU scale"
        self.description = self.title
        self.gpu_scale = True
        ep_ra, ep_ta = CLIP_EPOCHS_RANDAUG[self.spec.key], CLIP_EPOCHS_TA[self.spec.key]
        self.pools = {}
        for name, grid in CLIP_POOLS.items():
            randaug = grid.base.augment == "clip_randaug"
            grid = grid.__class__(grid.name, grid.base.with_(epochs=ep_ra if randaug else ep_ta), grid.columns,
                                  grid.source, grid.draw)
            self.pools[name] = grid
        self.pools["default"] = self.pools["pool1_randaug"]  # [P App. A]

    def load_raw(self, data_root: str | None) -> RawData:
        return self.spec.load(data_root)

    def weights_path(self, cfg, data_root: str | None) -> str:
        if cfg.weights:
            return str(cfg.weights)
        for root, _ in data_roots(data_root):
            return str(root / "clip" / f"{cfg.arch}-openai.safetensors")
        raise DataNotFound(f"no CLIP weights: pass --data-root (the file goes to <root>/clip/{cfg.arch}-openai."
                           "safetensors) or -o scenario.weights=PATH")

    def make_manifest(self, raw: RawData, control: RawData, control_meta: dict, trial: int) -> dict:
        import numpy as np

        pool = np.asarray(raw.train_pool)
        if raw.val is not None:  # EuroSAT: the predefined val split [PROTOCOL §1.3]
            train, val = pool, np.asarray(raw.val)
        else:
            tr, va = nm_val_split(len(pool))
            train, val = pool[tr], pool[va]
        n = len(raw.y)
        splits = {"forget_train": train, "forget_val": val, "forget_test": np.asarray(raw.test),
                  "control_val": n + np.asarray(control.train_pool), "control_test": n + np.asarray(control.test)}
        splits["forget"] = splits["forget_train"]  # what methods and the pool read as D_f
        splits["val"] = splits["forget_val"]
        return {
            "scenario": self.name, "trial": trial, "fingerprint": raw.fingerprint,
            "control_fingerprint": control.fingerprint, "forget_class": None, "forget_pct": None,
            "splits": {k: [int(i) for i in v] for k, v in splits.items()},
            "sizes": {k: int(len(v)) for k, v in splits.items()},
            "seeds": {s: stream_seed(trial, s) for s in ("init", "order", "pool")},
            "split_seed": 0, **control_meta,
        }

    def build_task(self, cfg, trial: int, data_root: str | None, raw: RawData | None = None) -> Task:
        from .model import check_arch, frozen_names

        check_arch(str(cfg.arch))
        raw = raw if raw is not None else self.load_raw(data_root)
        control, meta = load_imagenet_control(data_root)
        manifest = self.make_manifest(raw, control, meta, trial)
        base = self.pools["default"].base
        task = ClipTask(scenario=self.name, trial=trial, data=raw, manifest=manifest,
                        manifest_hash=sha256_hex(manifest), arch=f"clip-{cfg.arch}", in_channels=3, recipe=base,
                        pools=dict(self.pools), threads=self.threads, scoring=SCORING, augmentations=AUGMENTATIONS,
                        original_source="pretrained")
        task.control = control
        task.clip_arch = str(cfg.arch)
        task.frozen = frozen_names(n for n, _ in task.new_model().named_parameters())
        weights = "random" if cfg.weights == "random" else self.weights_path(cfg, data_root)
        from open_clip import zero_shot_metadata as zs

        templates = [t("{}") for t in (zs.OPENAI_IMAGENET_TEMPLATES if cfg.control_templates == "openai"
                                       else zs.SIMPLE_IMAGENET_TEMPLATES)]
        classnames = self.spec.classnames or raw.classnames
        if not classnames or len(classnames) != raw.num_classes:
            raise DataNotFound(f"{self.name}: {raw.num_classes} classes but {len(classnames or ())} class names")
        heads = {"forget": (list(classnames), list(self.spec.templates)),
                 "control": (list(zs.IMAGENET_CLASSNAMES), templates)}
        task.pretrained = lambda: _pretrained(task, weights, heads)
        return task


def _pretrained(task: ClipTask, weights: str, heads: dict):
    """(loader, tag): the tag names the weights' content and the prompts; loading waits for a store miss."""
    from pathlib import Path

    from .model import file_digest, pretrained_state

    digest = "random" if weights == "random" else file_digest(task.clip_arch, Path(weights).expanduser())
    tag = f"clip:{task.clip_arch}:{digest}:{sha256_hex(heads)[:16]}"

    def load():
        state, _ = pretrained_state(task.clip_arch, weights, heads, task.data.num_classes, task.control.num_classes)
        return state

    return load, tag


@hookimpl
def register_scenarios(register):
    for name in FORGET_SETS:
        register(ClipNegation(name, paper=dataset_paper(name)))  # its column of [P T B1] (PROTOCOL §9.2)
