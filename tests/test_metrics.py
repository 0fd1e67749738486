"""MIA-efficacy on constructed member / non-member inputs, Avg. Gap, sparsity (PROTOCOL §8)."""
from __future__ import annotations

import pytest
import torch

from unlearnbench.metrics import accuracy, avg_gap, confidence, mia_efficacy, sparsity


def test_mia_forget_like_members_scores_zero_like_nonmembers_scores_100():
    g = torch.Generator().manual_seed(0)
    members = 0.95 + 0.05 * torch.rand(400, generator=g)  # training samples: confident
    nonmembers = 0.2 + 0.3 * torch.rand(400, generator=g)  # unseen samples: unsure
    assert mia_efficacy(members, nonmembers, 0.95 + 0.05 * torch.rand(100, generator=g)) == 0.0
    assert mia_efficacy(members, nonmembers, 0.2 + 0.3 * torch.rand(100, generator=g)) == 100.0
    half = torch.cat([0.97 * torch.ones(30), 0.3 * torch.ones(70)])
    assert mia_efficacy(members, nonmembers, half) == pytest.approx(70.0)


def test_confidence_uses_true_label():
    lg = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    c = confidence(lg, torch.tensor([0, 0]))
    assert c[0] > 0.99 and c[1] < 0.01


def test_accuracy_percent():
    lg = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert accuracy(lg, torch.tensor([0, 1, 1, 1])) == 50.0


def test_avg_gap_reproduces_paper_t2_negmerge():
    """PROTOCOL §8.3: NegMerge in [P T2] has (0.85 + 1.87 + 1.55 + 0.01)/4 = 1.07."""
    retrain = {"acc_retain": 100.00, "acc_forget": 94.76, "acc_test": 94.26, "mia": 12.88}
    negm = {"acc_retain": 99.15, "acc_forget": 96.63, "acc_test": 92.71, "mia": 12.87}
    g, comps = avg_gap(negm, retrain)
    assert round(g, 2) == 1.07
    assert comps["acc_forget"] == pytest.approx(1.87)


def test_sparsity_both_denominators():
    tau = {"a": torch.tensor([0.0, 1.0, 0.0, 2.0]), "frozen": torch.zeros(4)}
    s = sparsity(tau, trainable=["a"])
    assert s["u_all"] == 75.0 and s["u_train"] == 50.0 and s["nonzero"] == 2


def test_logits_do_not_depend_on_eval_batch():
    """Records computed with the old CPU eval batch (2048) must still reproduce with the new one
    (512): a model's logits may not change a bit with the inference batch size or thread count.
    Checked on the fmnist architecture, whose BN and pooling run in eval mode."""
    import torch

    from unlearnbench import metrics
    from unlearnbench.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn-bn", 10, 1)
    x = torch.randn(1500, 1, 28, 28)
    saved, threads = dict(metrics.EVAL_BATCH), torch.get_num_threads()
    try:
        outs = []
        for th in sorted({1, min(2, threads)}):
            torch.set_num_threads(th)
            for b in (2048, 512, 100):
                metrics.EVAL_BATCH["cpu"] = b
                outs.append(metrics.logits(model, x))
    finally:
        metrics.EVAL_BATCH.clear()
        metrics.EVAL_BATCH.update(saved)
        torch.set_num_threads(threads)
    assert metrics.eval_batch("cpu") == 512 and metrics.eval_batch("cuda:0") == metrics.EVAL_BATCH_DEFAULT
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


def test_fast_eval_maxpool_is_the_stock_pool_bit_for_bit():
    """cnn-s and cnn-bn pool in channels-last memory at CPU inference (about 2x faster there,
    benchmarks/eval_maxpool.py); the values must be torch's own pool's, ties, -0.0 and NaN
    included, and training must keep the stock kernel (its gradient routing at ties)."""
    import torch
    from torch import nn

    from unlearnbench.models import build_model

    torch.manual_seed(0)
    for name, shape in (("cnn-bn", (300, 1, 28, 28)), ("cnn-s", (300, 1, 8, 8))):
        model = build_model(name, 10, 1).eval()
        fast = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
        assert fast and all(type(m) is not nn.MaxPool2d for m in fast)  # the fast pool is in the model
        stock = nn.MaxPool2d(2)
        x = torch.relu(torch.randn(64, 16, 28, 28))  # many tied zeros, as after a ReLU
        x[0, 0, 0, 0], x[1, 1, 2, 2], x[2, 2, 4, 4] = float("nan"), -0.0, float("inf")
        with torch.inference_mode():
            assert torch.equal(fast[0](x).nan_to_num(7.0), stock(x).nan_to_num(7.0))
            assert fast[0](x).is_contiguous()
            xin = torch.randn(*shape)
            ref = model(xin)
        for m in fast:  # the same network with the stock pool gives the same logits
            m.forward = nn.MaxPool2d.forward.__get__(m)
        with torch.inference_mode():
            assert torch.equal(model(xin), ref)
        # with autograd on, the pool makes no channels-last copy: training keeps the stock kernel
        calls, orig = [], torch.Tensor.contiguous
        spy = [m for m in build_model(name, 10, 1).modules() if isinstance(m, nn.MaxPool2d)][0]
        x = torch.randn(4, 16, 16, 16, requires_grad=True)

        def watch(t, *a, **k):
            calls.append(k.get("memory_format"))
            return orig(t, *a, **k)

        torch.Tensor.contiguous = watch
        try:
            spy(x).sum().backward()
            with torch.inference_mode():
                spy(x.detach())
        finally:
            torch.Tensor.contiguous = orig
        assert calls.count(torch.channels_last) == 1 and x.grad is not None  # the inference call only


def test_sparsity_breakdown_cnn():
    from unlearnbench.metrics import sparsity_breakdown
    from unlearnbench.models import build_model

    m = build_model("cnn-bn", 10)
    tau = {k: torch.ones_like(p) for k, p in m.named_parameters()}
    tau["0.weight"].zero_()  # the stem conv: all zeros
    tau["9.weight"][:128] = 0  # half the rows of fc(1568 -> 256)
    out = sparsity_breakdown(tau, m)
    assert out["by_depth"]["0"]["sparsity"] == 100.0 and out["by_depth"]["9"]["sparsity"] == pytest.approx(
        100 * 128 * 1568 / (256 * 1568 + 256))
    conv = out["by_component"]["conv"]
    assert conv["layers"] == 2 and conv["sparsity"] == pytest.approx(100 * 144 / (144 + 4608))
    assert out["by_component"]["bn_affine"]["sparsity"] == 0.0


def test_vit_blocks_split_in_thirds():
    from unlearnbench.metrics import _depth_group

    assert [_depth_group(f"visual.transformer.resblocks.{i}.mlp.c_fc.weight", 12) for i in (0, 3, 4, 8, 11)] == [
        "early", "early", "middle", "late", "late"]
