"""What the GPU training path does on one GPU, in at most 5 minutes (issue 20, acceptance 6).

Measured through the suite's own training loop (``unlearnbench.training.train``: data on the device,
the device-side crop + flip, ``amp``, channels-last), on synthetic images of the real shapes (speed
does not depend on the pixels), under the deterministic kernels every run uses
(``seeding.deterministic_kernels``):

- images/s of the CIFAR-10 ResNet-18 original recipe (PROTOCOL §2.1) in fp32 and bf16, and fp32 in
  channels-last (does the layout help without bf16?);
- images/s of one CIFAR-10 pool member (§6.3: batch 256, lr 0.05, on |D_f| = 4,500 images);
- the time of one CLIP ViT-B/32 pool-member step (§2.2: batch 128, AdamW, attention frozen) on random
  weights (open_clip, built offline), fp32 and bf16, and the host's RandAugment time for that batch;
- images/s of each device augmentation;
- the projected wall time of one cifar10-10pct trial's training stages (original and Retrain: 182
  epochs on 45,000 and 40,500 images; the 27-member pool: 1,350 epochs on 4,500), from the recipes'
  epochs x images.

Beside each figure: the same figure at the device's peak, from the step's FLOP count
(``torch.utils.flop_counter.FlopCounterMode``, forward + backward of one training step) and the peak
TFLOP/s of the device (``PEAK_TFLOPS``), so the fraction of the limit shows. fp32 convolutions run in
TF32 where cuDNN allows it (``torch.backends.cudnn.allow_tf32``, on by default), fp32 matrix products in
full fp32 (``torch.backends.cuda.matmul.allow_tf32``, off by default): the limit each row is held to says which.

Every stage runs under its own time cap (``CAPS``, an alarm), sized so the whole check stays
under 5 minutes on the GPU; a stage over its cap is reported as such and the rest go on. The results
are rewritten after every stage (``device_check.json``, ``device_check.txt``) under ``--out``, else
$OUT (what the device tool copies back), else benchmarks/results/device_check/.

    python benchmarks/device_check.py                 # on the GPU, via benchmarks/device_check.sh
    python benchmarks/device_check.py --smoke --out /tmp/dc   # tiny sizes on CPU, < 60 s (a test runs it)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

# Dense peak TFLOP/s (no structured sparsity) from the vendors' data sheets: (fp32, tf32, bf16).
# Matched against torch.cuda.get_device_name() by the longest name it contains ("H100 PCIe" before "H100").
PEAK_TFLOPS: dict[str, tuple[float, float | None, float | None]] = {
    "H200": (67.0, 494.7, 989.4),
    "H100": (67.0, 494.7, 989.4),  # SXM
    "H100 PCIe": (51.2, 378.0, 756.0),
    "H100 NVL": (60.0, 417.5, 835.5),
    "A100": (19.5, 156.0, 312.0),
    "L40S": (91.6, 183.0, 362.1),
    "L40": (90.5, 90.5, 181.0),
    "L4": (30.3, 60.0, 121.0),
    "A10": (31.2, 62.5, 125.0),
    "V100": (15.7, None, None),  # no TF32 and no bf16 tensor cores
    "T4": (8.1, None, None),
}

# Seconds each stage may take on the GPU (its alarm); their sum plus start-up (~20 s) stays under 300.
CAPS = {"augment": 12, "flops": 20, "cifar_fp32": 40, "cifar_bf16": 30, "cifar_fp32_cl": 25, "pool_member": 30,
        "clip_fp32": 40, "clip_bf16": 30, "clip_randaug": 12}
SMOKE_CAPS = {k: 6 for k in CAPS}  # 9 stages at toy sizes: seconds each on one CPU thread

# cifar10-10pct's training stages (PROTOCOL §1.1, §2.1, §6.3): 50,000 train, 10% of it val, 10% of the rest D_f.
N_TRAIN, N_FORGET = 45_000, 4_500


def peak_for(name: str) -> tuple[str | None, tuple | None]:
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key.lower() in name.lower():
            return key, PEAK_TFLOPS[key]
    return None, None


class StageTimeout(Exception):
    pass


@contextmanager
def capped(seconds: float):
    """Raise StageTimeout in the stage once ``seconds`` have passed (SIGALRM; the main thread only)."""
    def fire(*_):
        raise StageTimeout(f"over its {seconds:.0f} s cap")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_flops(model, x, y, amp: str) -> float:
    """FLOPs of one training step's forward and backward on (x, y), per image."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    ctx = torch.autocast(x.device.type, dtype=torch.bfloat16) if amp == "bf16" else torch.autocast(
        x.device.type, enabled=False)
    with FlopCounterMode(display=False) as fc:
        with ctx:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / len(x)


def timed_train(model, x, y, recipe, device: str, amp: str = "fp32", channels_last=None, augment=None) -> float:
    from unlearnbench.training import train

    sync(device)
    t0 = time.perf_counter()
    train(model, x, y, recipe, _gen(), device=device, show_progress=False, amp=amp, channels_last=channels_last,
          augment=augment)
    sync(device)
    return time.perf_counter() - t0


def _gen():
    import torch

    return torch.Generator().manual_seed(0)


def throughput(build, recipe, n_rows: int, shape, classes: int, device: str, budget: float, amp: str = "fp32",
               channels_last=None, max_steps: int = 400, augment=None) -> dict:
    """Images/s of ``recipe`` through the training loop: a warm-up call of 2 steps, a 3-step call to
    time a step, then as many epochs over ``n_rows`` images (0: one epoch of as many steps as fit) as
    fit in about half of ``budget``."""
    import torch

    torch.manual_seed(0)
    model = build()
    b = recipe.batch
    warm_x, warm_y = torch.rand(2 * b, *shape), torch.randint(0, classes, (2 * b,))
    timed_train(model, warm_x, warm_y, recipe.with_(epochs=1), device, amp, channels_last, augment)
    x3, y3 = torch.rand(3 * b, *shape), torch.randint(0, classes, (3 * b,))
    step = timed_train(model, x3, y3, recipe.with_(epochs=1), device, amp, channels_last, augment) / 3
    steps = max(3, min(max_steps, int(0.5 * budget / max(step, 1e-6))))
    if n_rows:  # a pool member: whole epochs over D_f
        spe = math.ceil(n_rows / b)
        epochs = max(1, steps // spe)
        x, y = torch.rand(n_rows, *shape), torch.randint(0, classes, (n_rows,))
    else:
        epochs, x = 1, torch.rand(steps * b, *shape)
        y = torch.randint(0, classes, (len(x),))
    t = timed_train(model, x, y, recipe.with_(epochs=epochs), device, amp, channels_last, augment)
    return {"images_per_s": epochs * len(x) / t, "step_s": t / (epochs * math.ceil(len(x) / b)),
            "images": epochs * len(x), "seconds": t, "batch": b, "amp": amp}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on any device (CPU: < 60 s), for the test")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--out", default=None, help="default: $OUT, else benchmarks/results/device_check")
    ap.add_argument("--peak", default=None, help="FP32,TF32,BF16 peak TFLOP/s of a device the table lacks")
    ap.add_argument("--only", default=None, help="comma-separated stages (default all): " + ",".join(CAPS))
    a = ap.parse_args(argv)

    import torch

    from unlearnbench.seeding import deterministic_kernels

    t_start = time.perf_counter()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    deterministic_kernels(device)  # what every run gets (runner.run_trial)
    if device == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    out = Path(a.out or os.environ.get("OUT") or Path(__file__).resolve().parent / "results" / "device_check")
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    key, peak = peak_for(name)
    if a.peak:
        key, peak = "--peak", tuple(float(v) if v else None for v in a.peak.split(","))
    caps = SMOKE_CAPS if a.smoke else CAPS
    only = set(a.only.split(",")) if a.only else set(CAPS)
    res: dict = {"device": name, "peak_key": key, "peak_tflops": dict(zip(("fp32", "tf32", "bf16"), peak or ())),
                 "smoke": a.smoke, "torch": torch.__version__,
                 "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                 "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32), "stages": {}}

    def limit(amp: str, conv: bool) -> tuple[str, float | None]:
        """The precision a step's FLOPs run at and its peak: bf16, else TF32 where allowed, else fp32."""
        if peak is None:
            return ("bf16" if amp == "bf16" else "fp32"), None
        fp32, tf32, bf16 = peak
        if amp == "bf16":
            return "bf16", bf16
        allowed = device.startswith("cuda") and (res["cudnn_allow_tf32"] if conv else res["matmul_allow_tf32"])
        return ("tf32", tf32) if allowed and tf32 else ("fp32", fp32)

    def save() -> None:
        res["total_s"] = round(time.perf_counter() - t_start, 2)
        (out / "device_check.json").write_text(json.dumps(res, indent=1))
        (out / "device_check.txt").write_text(report(res))

    def stage(label: str, fn) -> None:
        if label not in only:
            return
        t0 = time.perf_counter()
        try:
            with capped(caps[label]):
                got = fn()
            got["stage_s"] = round(time.perf_counter() - t0, 2)
        except StageTimeout as e:
            got = {"error": str(e), "stage_s": round(time.perf_counter() - t0, 2)}
        except Exception as e:  # one stage's failure (no open_clip, out of memory) must not end the check
            got = {"error": f"{type(e).__name__}: {e}", "stage_s": round(time.perf_counter() - t0, 2)}
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        res["stages"][label] = got
        print(f"{label}: {json.dumps(got)}", flush=True)
        save()

    from unlearnbench.augment import AUGMENTS
    from unlearnbench.models import build_model
    from unlearnbench.scenarios.cifar10 import CIFAR10, POOL

    original, member = CIFAR10.recipe, POOL.members()[0]
    shape, n_member, max_steps = (3, 32, 32), N_FORGET, 400
    arch = "resnet18-cifar"
    if a.smoke:  # the same code paths at toy sizes: digits' CNN on 8 px RGB, tiny batches
        original, member = original.with_(batch=4), member.with_(batch=4)
        arch, shape, n_member, max_steps = "cnn-s", (3, 8, 8), 12, 3
    res["arch"] = arch
    res["clip_arch"] = "tiny" if a.smoke else "vit-b-32"
    # one-time costs outside every stage's cap: torch's first optimiser imports its compiler stack
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    import torch.utils.flop_counter  # noqa: F401

    def resnet():
        return build_model(arch, 10, 3)

    def augment_stage():
        rows = {"crop_flip": (256, 3, 32, 32), "translate2": (128, 1, 28, 28), "rrc_flip": (64, 3, 224, 224)}
        if a.smoke:
            rows = {"crop_flip": (8, 3, 32, 32), "translate2": (8, 1, 28, 28), "rrc_flip": (4, 3, 32, 32)}
        got = {}
        for aug, shp in rows.items():
            xb, g = torch.rand(*shp, device=device), _gen()
            AUGMENTS[aug](xb, g)
            sync(device)
            reps, t0 = 0, time.perf_counter()
            while reps < 3 or (time.perf_counter() - t0 < 1.0 and reps < 200):
                AUGMENTS[aug](xb, g)
                reps += 1
            sync(device)
            got[aug] = {"images_per_s": reps * shp[0] / (time.perf_counter() - t0), "batch": list(shp)}
        return got

    def flops_stage():
        b = 2 if a.smoke else 32
        got = {}
        m = resnet().to(device)
        x, y = torch.rand(b, *shape, device=device), torch.randint(0, 10, (b,), device=device)
        got["cifar"] = {"flops_per_image": train_flops(m, x, y, "fp32"), "input": list(shape), "arch": arch}
        clip = clip_model()
        if clip is not None:
            m, side = clip
            m = m.to(device)
            x = torch.rand(b, 3, side, side, device=device)
            got["clip"] = {"flops_per_image": train_flops(m, x, torch.randint(0, 10, (b,), device=device), "fp32"),
                           "input": [3, side, side], "arch": res["clip_arch"]}
        return got

    def with_limit(r: dict, amp: str, conv: bool, model: str) -> dict:
        fl = res["stages"].get("flops", {}).get(model, {}).get("flops_per_image")
        prec, pk = limit(amp, conv)
        r["limit"] = prec
        if fl and pk:
            r["images_per_s_at_peak"] = pk * 1e12 / fl
            r["fraction_of_peak"] = r["images_per_s"] / r["images_per_s_at_peak"]
        return r

    def cifar(amp: str, cl=None):
        def run():
            r = throughput(resnet, original, 0, shape, 10, device, caps_for(amp, cl), amp, cl, max_steps)
            return with_limit(r, amp, True, "cifar")
        return run

    def caps_for(amp, cl):
        return caps["cifar_bf16" if amp == "bf16" else ("cifar_fp32_cl" if cl else "cifar_fp32")]

    def member_stage():
        r = throughput(resnet, member, n_member, shape, 10, device, caps["pool_member"], "fp32", None, max_steps)
        return with_limit(r, "fp32", True, "cifar")

    built: dict = {}

    def clip_model():
        """(ClipClassifier, input side): ViT-B/32 on random weights (tiny in smoke mode), heads drawn at random;
        built once (seconds), and every stage starts from the same weights."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: pretrained=None
        try:
            from unlearnbench.scenarios.clip.model import clip_classifier
        except Exception:
            return None
        if not built:
            torch.manual_seed(0)
            m = clip_classifier(res["clip_arch"], 10, 10)
            with torch.no_grad():  # zero heads would give zero gradients; the step costs the same either way
                m.head_forget.normal_()
                m.head_control.normal_()
            built["model"], built["state"] = m, {k: v.clone() for k, v in m.state_dict().items()}
        m = built["model"]
        m.load_state_dict(built["state"])
        return m, m.image_size[0]

    def clip_stage(amp: str):
        def run():
            from unlearnbench.scenarios.clip.pools import CLIP_POOLS

            got = clip_model()
            if got is None:
                raise RuntimeError("open_clip is not installed: carry its wheel (benchmarks/device_check.sh)")
            model, side = got
            rec = CLIP_POOLS["pool1_randaug"].members()[0].with_(augment="none", randaug_n=0)
            if a.smoke:
                rec = rec.with_(batch=4)
            r = throughput(lambda: model, rec, 0, (3, side, side), 10, device, caps[f"clip_{amp}"], amp, None,
                           30 if not a.smoke else 3)
            r = with_limit(r, amp, False, "clip")
            r["what"] = "model step only: forward, backward, clip, AdamW (the pool's augmentation is clip_randaug below)"
            return r
        return run

    def randaug_stage():
        """The host's share of a CLIP RandAugment pool member's step: RRC + flip, then timm's RandAugment (PIL),
        for one batch of 128 stored images (224 px here; PROTOCOL §6.1). Host-bound by design: PIL."""
        from unlearnbench.augment import rand_augment
        from unlearnbench.scenarios.clip.augment import clip_randaug

        n, side = (4, 32) if a.smoke else (128, 224)
        xb, g = torch.rand(n, 3, side, side), _gen()
        got = {}
        for ops in (1, 3):
            ra = rand_augment(ops, 5)
            t0 = time.perf_counter()
            ra(clip_randaug(xb, g), g)
            got[f"n{ops}_m5_batch_s"] = time.perf_counter() - t0
        got["batch"] = n
        return got

    stage("augment", augment_stage)
    stage("flops", flops_stage)
    stage("cifar_fp32", cifar("fp32"))
    stage("cifar_bf16", cifar("bf16"))
    stage("cifar_fp32_cl", cifar("fp32", True))
    stage("pool_member", member_stage)
    stage("clip_fp32", clip_stage("fp32"))
    stage("clip_bf16", clip_stage("bf16"))
    stage("clip_randaug", randaug_stage)
    res["projection"] = projection(res)
    save()
    print(report(res))
    return 0


def projection(res: dict) -> dict:
    """Wall time of one cifar10-10pct trial's training stages at the measured rates and at the peak:
    original (182 epochs x 45,000) + Retrain (182 x 40,500) at the original's rate, the pool (sum of
    the 27 members' epochs x 4,500) at a member's rate."""
    from unlearnbench.scenarios.cifar10 import CIFAR10, POOL

    ep = CIFAR10.recipe.epochs
    shared = ep * N_TRAIN + ep * (N_TRAIN - N_FORGET)
    pool = sum(m.epochs for m in POOL.members()) * N_FORGET
    st = res["stages"]
    out = {"images": {"original_and_retrain": shared, "pool": pool}}
    member = st.get("pool_member", {})
    for amp in ("fp32", "bf16"):
        orig = st.get(f"cifar_{amp}", {})
        if "images_per_s" not in orig:
            continue
        # the pool's rate in bf16 was not measured: scaled from fp32's by the original's bf16/fp32 ratio
        m_rate = member.get("images_per_s")
        if m_rate and amp == "bf16" and "images_per_s" in st.get("cifar_fp32", {}):
            m_rate *= orig["images_per_s"] / st["cifar_fp32"]["images_per_s"]
        row = {"hours": (shared / orig["images_per_s"] + pool / (m_rate or orig["images_per_s"])) / 3600}
        if orig.get("images_per_s_at_peak"):
            row["hours_at_peak"] = (shared + pool) / orig["images_per_s_at_peak"] / 3600
            row["fraction_of_peak"] = row["hours_at_peak"] / row["hours"]
        out[amp] = row
    return out


def _fmt(v, unit=""):
    if v is None:
        return "n/a"
    return f"{v:,.0f}{unit}" if v >= 100 else f"{v:.3g}{unit}"


def report(res: dict) -> str:
    pk = res.get("peak_tflops") or {}
    lines = [f"device check on {res['device']} (torch {res['torch']}{', SMOKE sizes' if res['smoke'] else ''}); "
             f"peak TFLOP/s ({res.get('peak_key') or 'not in the table'}): "
             + (", ".join(f"{k} {v}" for k, v in pk.items()) or "unknown"),
             f"cuDNN TF32 {'on' if res['cudnn_allow_tf32'] else 'off'}, matmul TF32 "
             f"{'on' if res['matmul_allow_tf32'] else 'off'}; deterministic kernels as every run",
             "", f"{'stage':<34}{'measured':>16}{'at peak (FLOPs)':>18}{'fraction':>10}  limit"]
    st = res["stages"]
    arch = res.get("arch")
    rows = [("cifar_fp32", f"CIFAR-10 {arch} original fp32"), ("cifar_bf16", f"CIFAR-10 {arch} original bf16"),
            ("cifar_fp32_cl", "  fp32, channels-last"), ("pool_member", "CIFAR-10 pool member (fp32)"),
            ("clip_fp32", f"CLIP {res.get('clip_arch')} member step fp32"),
            ("clip_bf16", f"CLIP {res.get('clip_arch')} member step bf16")]
    for key, label in rows:
        r = st.get(key)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"{label:<34}{'-':>16}  {r['error']}")
            continue
        if key.startswith("clip"):
            m, p = f"{r['step_s'] * 1e3:.1f} ms/step", r.get("images_per_s_at_peak")
            p = f"{r['batch'] / p * 1e3:.1f} ms/step" if p else "n/a"
        else:
            m, p = _fmt(r["images_per_s"], " img/s"), _fmt(r.get("images_per_s_at_peak"), " img/s")
        frac = f"{100 * r['fraction_of_peak']:.1f}%" if r.get("fraction_of_peak") else "n/a"
        lines.append(f"{label:<34}{m:>16}{p:>18}{frac:>10}  {r['limit']}")
    if "flops" in st and "error" not in st["flops"]:
        lines.append("")
        for k, v in st["flops"].items():
            if isinstance(v, dict):
                lines.append(f"training FLOPs per image, {v['arch']} at {v['input']}: "
                             f"{v['flops_per_image'] / 1e9:.3g} GFLOP (forward + backward)")
    if "augment" in st and "error" not in st["augment"]:
        lines.append("device augmentation: " + ", ".join(
            f"{k} {_fmt(v['images_per_s'], ' img/s')}" for k, v in st["augment"].items() if isinstance(v, dict)))
    ra = st.get("clip_randaug")
    if ra and "error" not in ra:
        lines.append(f"host RandAugment for one CLIP batch of {ra['batch']}: "
                     f"N=1 {ra['n1_m5_batch_s'] * 1e3:.0f} ms, N=3 {ra['n3_m5_batch_s'] * 1e3:.0f} ms")
    proj = res.get("projection") or {}
    if proj:
        im = proj["images"]
        lines += ["", f"one cifar10-10pct trial's training stages: {im['original_and_retrain']:,} images (original + "
                  f"Retrain) + {im['pool']:,} (27-member pool)"]
        for amp in ("fp32", "bf16"):
            if amp in proj:
                r = proj[amp]
                at = f"; {r['hours_at_peak'] * 60:.1f} min at peak ({100 * r['fraction_of_peak']:.1f}%)" \
                    if r.get("hours_at_peak") else ""
                lines.append(f"  {amp}: {r['hours']:.2f} h measured{at}")
    lines.append(f"\ntotal {res.get('total_s', 0):.0f} s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
