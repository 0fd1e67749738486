"""cifar10-swin-10pct [P T B11]: timm's Swin-T from ImageNet weights in a local file (PROTOCOL §2.1),
its AdamW recipe with RandomResizedCrop + flip at the configured size, and the `cifar10/swin_t`
pool (§6.3). Tested with the two-stage ``swin_test`` Swin at 16 px on small CIFAR-10 python batches,
one to three epochs per model."""
from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from unlearnbench.errors import ConfigError

from helpers import scen_cfg, write_tree
from unlearnbench.scenarios import _swin, cifar10

pytest.importorskip("timm")

NAME = "cifar10-swin-10pct"
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
TINY = {"arch": "swin_test", "size": 16}  # 4x4 patches of 16 px, window 2: milliseconds a step


@pytest.fixture(autouse=True)
def small_sets(monkeypatch):
    """Small files: the loader checks them without CIFAR-10's counts (tests/scenarios/test_cifar10.py)."""
    monkeypatch.setattr(cifar10, "DEFINITION", cifar10.DEFINITION.small())


@pytest.fixture
def cifar_root(tmp_path):
    """The python release's six batches, as the CIFAR page ships them (protocol-2 pickled dicts)."""
    rng = np.random.default_rng(0)
    files = {}
    for b in BATCHES:
        x = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
        files[f"cifar-10-batches-py/{b}"] = pickle.dumps({"batch_label": "fake", "labels": (np.arange(20) % 10).tolist(),
                                                          "data": x}, protocol=2)
    write_tree(tmp_path / "data", files)
    return tmp_path / "data"


@pytest.fixture
def one_epoch(host, monkeypatch):
    """The test hook for speed: the scenario's recipe and pool at one to three epochs (the protocol's are
    30 and 40-60); everything else, AdamW, the schedule, the crops, the 27-member grid, is the real one."""
    scen = host.scenarios.get(NAME)
    monkeypatch.setattr(scen, "recipe", scen.recipe.with_(epochs=1, warmup_epochs=0))
    pool = scen.pools["default"]
    monkeypatch.setattr(scen, "pools", {"default": replace(pool, base=pool.base.with_(epochs=1),
                                                           columns=(("epochs", (1, 2, 3)),) + pool.columns[1:])})
    return scen


def weights_file(tmp_path, name, seed, fmt="pth", layout="timm", **shape):
    """A random-init timm swin_test (or, with ``shape``, another Swin) state dict with a 1000-way head,
    as an ImageNet file holds it."""
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(seed)
    sd = SwinTransformer(img_size=16, num_classes=1000, **{**_swin.ARCHS["swin_test"], **shape}).state_dict()
    if layout == "microsoft":  # downsampling at the end of a stage, `head`, stored buffers, {"model": ...}
        sd = {k.replace("layers.1.downsample", "layers.0.downsample").replace("head.fc.", "head."): v
              for k, v in sd.items()}
        sd["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    p = tmp_path / f"{name}.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(p))
    else:
        torch.save({"model": sd} if layout == "microsoft" else sd, p)
    return p, sd


def stages_for(host, tmp_path, cifar_root, pretrained, **over):
    from unlearnbench.stages import Stages
    from unlearnbench.store import Store

    scen, cfg = scen_cfg(host, NAME, pretrained=pretrained, **{**TINY, **over})
    return Stages(scen.build_task(cfg, 0, str(cifar_root)), Store(tmp_path / "store"))


# -- the recipe and the pool ---------------------------------------------------------------------

def test_swin_recipe_is_adamw_rrc_flip_at_the_configured_size(host, tmp_path, cifar_root):
    from torchvision.transforms.v2 import functional as TF

    from unlearnbench.augment import rrc_params

    scen = host.scenarios.get(NAME)
    r = scen.recipe  # PROTOCOL §2.1 `cifar10 / swin_t`
    assert (r.optimizer, r.lr, r.wd, r.epochs, r.batch, r.schedule, r.warmup_epochs, r.augment) == (
        "adamw", 1e-4, 0.05, 30, 128, "cosine", 2, "rrc224_flip")
    pool = scen.pools["default"]  # §6.3 `cifar10/swin_t`: AdamW 1e-5 constant, batch 64, 3 x 3 x 3
    members = pool.members()
    assert len(members) == 27 and {(m.optimizer, m.lr, m.batch, m.schedule) for m in members} == {
        ("adamw", 1e-5, 64, "constant")}
    assert {m.epochs for m in members} == {40, 50, 60} and {m.wd for m in members} == {1e-4, 5e-5, 1e-5}
    assert {m.label_smoothing for m in members} == {0.0, 0.05, 0.1}
    t = stages_for(host, tmp_path, cifar_root, "random", size=32).task
    assert t.recipe.augment == "rrc32_flip" and {m.augment for m in t.pools["default"].members()} == {"rrc32_flip"}
    assert t.recipe.optimizer == "adamw" and t.arch == "swin_test-32px"  # the size is in every store key
    # the named augmentation: RandomResizedCrop(32) of each stored image, then HFlip, replayed from the generator
    aug = t.augment_for(t.recipe)
    x = torch.rand(8, 3, 16, 16)
    out = aug(x, torch.Generator().manual_seed(4))
    assert out.shape == (8, 3, 32, 32)
    g, flips = torch.Generator().manual_seed(4), 0
    for i in range(8):
        top, left, h, w = rrc_params(16, 16, g)
        ref = TF.resized_crop(x[i], top, left, h, w, [32, 32], antialias=True)
        if torch.rand(1, generator=g).item() < 0.5:
            ref, flips = ref.flip(-1), flips + 1
        assert torch.allclose(out[i], ref, atol=1e-5), i
    assert 0 < flips < 8


def test_two_epoch_warmup_is_in_epochs_for_original_and_retrain():
    """PROTOCOL §2.1: a 2-epoch linear warmup, then cosine; the original (more steps per epoch) and
    Retrain both warm up for two of their own epochs."""
    from unlearnbench.training import lr_at

    r = cifar10.SWIN_RECIPE
    for spe in (352, 317):  # ⌈45,000 / 128⌉ and ⌈40,500 / 128⌉
        total = r.epochs * spe
        assert lr_at(r, 0, total, spe) == pytest.approx(r.lr / (2 * spe))
        assert lr_at(r, 2 * spe - 1, total, spe) == pytest.approx(r.lr)
        assert lr_at(r, 2 * spe, total, spe) == pytest.approx(r.lr)  # the cosine starts at the peak
        assert lr_at(r, total - 1, total, spe) < 1e-3 * r.lr
    assert cifar10.SWIN_RECIPE.spec()["warmup_epochs"] == 2  # keyed; a recipe without it keeps its old key
    assert "warmup_epochs" not in cifar10.CIFAR10.recipe.spec()


# -- the model -------------------------------------------------------------------------------------

def test_swin_t_is_timms_and_resizes_and_normalises_inside():
    from unlearnbench.taskvec import param_keys

    with torch.device("meta"):  # shapes only: no 27M-parameter init
        big = _swin.build_swin("swin_t", 224, 10)
    assert sum(p.numel() for p in big.parameters()) == 27_527_044  # swin_tiny_patch4_window7_224, 10-way head
    assert big.patch_embed.proj.kernel_size == (4, 4) and big.layers[2].blocks[5].attn.window_size == (7, 7)
    torch.manual_seed(0)
    m = _swin.build_swin("swin_test", 16, 10).eval()
    x = torch.rand(3, 3, 32, 32)  # CIFAR's stored size: resized to the network's 16 px inside
    small = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        assert m(x).shape == (3, 10) and torch.allclose(m(x), m(small))
    keys = param_keys(m)
    assert "normalize.mean" not in keys and "head.fc.weight" in keys  # buffers stay out of τ (§3)
    with pytest.raises(ConfigError, match="multiple of 8"):
        _swin.check_arch("swin_test", 20)


# -- the ImageNet weights --------------------------------------------------------------------------

def test_pretrained_digest_is_in_every_key(host, tmp_path, cifar_root, one_epoch):
    """θ_init is the file's backbone with a head drawn from the init stream; other weights give other
    init, original, retrain and pool keys; the same weights in another format or layout, the same."""
    a, sd = weights_file(tmp_path, "a", 0, "safetensors")
    b, _ = weights_file(tmp_path, "b", 1)
    ms, _ = weights_file(tmp_path, "a-ms", 0, layout="microsoft")
    keys = {}
    for name, path in (("a", a), ("b", b), ("a-ms", ms), ("random", "random")):
        st = stages_for(host, tmp_path / name, cifar_root, str(path))
        init = st.init_weights()
        st.original()
        st.retrain()
        (info, _), = st.pool_stream("default", 1, {})
        keys[name] = (st.keys["init"], st.keys["original"], st.keys["retrain"], info["key"])
        if name == "a":
            assert torch.equal(init["layers.1.downsample.reduction.weight"], sd["layers.1.downsample.reduction.weight"])
            assert init["head.fc.weight"].shape == (10, 32)  # the scenario's head, not the file's 1000-way one
            head = init["head.fc.weight"]
            blob = pickle.dumps(st.task.pretrained)  # what a job for an executor's worker carries
            assert len(blob) < 1000 and pickle.loads(blob)()[1] == st.task.pretrained()[1]  # not the weights
        else:
            assert torch.equal(init["head.fc.weight"], head)  # same trial, same drawn head
    assert keys["a"] == keys["a-ms"]  # one θ_init: the digest is of the weights, not the file's bytes
    for other in ("b", "random"):
        assert all(x != y for x, y in zip(keys["a"], keys[other])), other  # init, original, retrain, pool


def test_missing_unreadable_and_mismatched_weights_are_config_errors(host, tmp_path, cifar_root):
    with pytest.raises(ConfigError, match="scenario.pretrained is not set.*scenario.pretrained=PATH"):
        scen_cfg(host, NAME)  # refused when the config is resolved, before any data is read
    with pytest.raises(ConfigError, match="no such file"):
        scen_cfg(host, NAME, pretrained=str(tmp_path / "nope.safetensors"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    bad = {"junk": (tmp_path / "junk.pth", "not a loadable swin_test state dict")}
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet.pth")
    bad["resnet"] = (tmp_path / "resnet.pth", "lacks 'patch_embed.proj.weight'")
    bad["deeper"] = (weights_file(tmp_path, "deeper", 0, depths=(1, 2))[0], "holds 'layers.1.blocks.1")
    bad["wider"] = (weights_file(tmp_path, "wider", 0, embed_dim=8)[0], "'patch_embed.proj.weight' has shape")
    for name, (path, msg) in bad.items():
        st = stages_for(host, tmp_path / name, cifar_root, str(path))
        with pytest.raises(ConfigError, match=msg) as e:
            st.init_weights()
        assert "scenario.pretrained=PATH" in str(e.value), name  # and what to pass instead


def test_cli_without_weights_exits_2_with_one_message(tmp_path):
    from click.testing import CliRunner

    from unlearnbench.cli import main

    r = CliRunner().invoke(main, ["run", "--scenario", NAME, "--method", "negmerge", "--seeds", "0", "-q",
                                  "--store", str(tmp_path / "s"), "--runs-dir", str(tmp_path / "r")])
    assert r.exit_code == 2 and "scenario.pretrained is not set" in r.output and "Traceback" not in r.output


# -- end to end ------------------------------------------------------------------------------------

@pytest.mark.slow  # ~5 s of CPU (λ sweep, MIA, per-example outputs); the stages alone are tested above
def test_negmerge_run_on_swin_end_to_end(host, tmp_path, cifar_root, one_epoch):
    """The whole run path (original, Retrain, the pool, a merge, λ selection, evaluation, the record)."""
    from unlearnbench.config import resolve
    from unlearnbench.runner import run_trial
    from unlearnbench.store import Store

    path, _ = weights_file(tmp_path, "in1k", 0)
    over = [f"scenario.pretrained={path}", "scenario.arch=swin_test", "scenario.size=16", "pool.size=2", "threads=1",
            "selection.also=none"]  # the oracle rules evaluate MIA at every λ: seconds, and not what is tested here
    res = resolve(host, method="negmerge", scenario=NAME, overrides=over)
    rec = run_trial(res, 0, store=Store(tmp_path / "store"), runs_dir=tmp_path / "runs", data_root=str(cifar_root))
    assert rec["scenario"] == NAME and rec["config"]["scenario"]["pretrained"] == str(path)
    assert {"init", "original", "retrain"} <= set(rec["artifacts"]) and rec["timings"]["pool_trained"] == 2
    assert rec["info"]["pool"]["n"] == 2 and rec["info"]["pool"]["of"] == 27
    for k in ("acc_retain", "acc_forget", "acc_test", "mia"):
        assert 0.0 <= rec["metrics"][k] <= 100.0
    assert rec["split_sizes"]["forget"] == 9 and rec["gap"] is not None  # ⌊0.1 · 90⌋; Avg. Gap to Retrain
