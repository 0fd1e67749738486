"""Task vectors over parameters only; buffers (BN statistics, integer counters) from θ_0 (PROTOCOL §3)."""
from __future__ import annotations

import pytest
import torch

from unlearnbench.errors import StoreError
from unlearnbench.methods.negmerge import negmerge
from unlearnbench.models import build_model
from unlearnbench.taskvec import InPlaceEditor, edited_state, param_keys, task_vector


def perturbed(model, seed):
    g = torch.Generator().manual_seed(seed)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for k, v in sd.items():
        if v.is_floating_point():
            sd[k] = v + torch.randn(v.shape, generator=g)
        else:
            sd[k] = v + 7  # num_batches_tracked moves during fine-tuning
    return sd


def test_param_keys_exclude_buffers():
    m = build_model("cnn-bn", 10)
    keys = param_keys(m)
    assert "1.weight" in keys and "1.bias" in keys  # BN affine parameters are in P
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in keys)
    assert sum(m.state_dict()[k].numel() for k in keys) == 409_082  # PROTOCOL §2.1


def test_cnn_s_size():
    m = build_model("cnn-s", 10)
    assert sum(p.numel() for p in m.parameters()) == 38_282


def test_buffers_come_from_theta0_never_scaled():
    m = build_model("cnn-bn", 10)
    theta0 = perturbed(m, 0)
    theta0["1.running_var"] = torch.full_like(theta0["1.running_var"], 0.01)
    keys = param_keys(m)
    taus = [task_vector(perturbed(m, s), theta0, keys) for s in (1, 2, 3)]
    tau = negmerge(taus)
    assert set(tau) == set(keys)
    out = edited_state(theta0, tau, 5.0)
    for k in theta0:
        if k in tau:
            assert torch.allclose(out[k], theta0[k] - 5.0 * tau[k])
        else:
            assert torch.equal(out[k], theta0[k]), k  # running stats and the int counter: θ_0's, bit for bit
    assert out["1.num_batches_tracked"].dtype == torch.int64
    assert (out["1.running_var"] > 0).all()  # never θ_0 − λΔ, which can go negative


def test_in_place_editor_matches_edited_state():
    m = build_model("cnn-bn", 10)
    theta0 = perturbed(m, 0)
    tau = task_vector(perturbed(m, 1), theta0, param_keys(m))
    ed = InPlaceEditor(m, theta0, tau)
    ptr = m[0].weight.data_ptr()
    for lam in (0.0, 0.35, 2.0):
        ed.set(lam)
        ref = edited_state(theta0, tau, lam)
        for k, v in m.state_dict().items():
            assert torch.equal(v, ref[k]), k  # bitwise: the swept model is the one evaluated
    assert m[0].weight.data_ptr() == ptr  # updated in place, nothing rebuilt


def test_non_finite_candidate_rejected():
    m = build_model("cnn-s", 10)
    theta0 = m.state_dict()
    bad = {k: v.clone() for k, v in theta0.items()}
    bad["0.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(StoreError, match="non-finite"):
        task_vector(bad, theta0, param_keys(m))
