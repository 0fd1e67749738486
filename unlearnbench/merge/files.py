"""Merging checkpoints a user already has, without our scenarios (``unlearnbench merge``)."""
from __future__ import annotations

from pathlib import Path

from ..config import Choice
from ..data import load_state_dict
from ..errors import ConfigError


def merge_keys(base: dict) -> list[str]:
    """The tensors that form τ: floating-point entries that are not BN statistics (PROTOCOL §3).

    A bare state dict does not say which entries are buffers, so BN running statistics are
    recognised by name (running_mean / running_var); integer tensors are never merged."""
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return [k for k, v in base.items() if v.is_floating_point() and not k.endswith(skip)]


class Engine(Choice):
    """How ``merge_files`` reads the files: ``--engine``, a command-line option and never a config
    value, so ``per-file`` may be spelled with a hyphen (its member is ``per_file``)."""

    auto = "auto"  # chunked where it applies, else per-file
    chunked = "chunked"  # chunk by chunk over all files (safetensors inputs, elementwise methods)
    per_file = "per-file"  # one whole checkpoint at a time, into the method's streaming reducer


def merge_files(host, method: str, base_path: str, ft_paths: list[str], output: str, lam: float | None,
                options: list[str], engine: str = "auto") -> dict:
    """Merge the task vectors FTi − BASE with ``method`` (``options``: its KEY=VALUE options) and write
    the merged τ, or with ``lam`` the edited model BASE − lam·τ, to ``output``; returns a summary."""
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from ..config import merge_layer, parse_overrides, section_class
    from ..taskvec import edited_state, task_vector

    meth = host.methods.get(method)
    if not hasattr(meth, "reducer"):
        merging = [n for n in host.methods.names() if hasattr(host.methods.get(n), "reducer")]
        raise ConfigError(f"method {method!r} is not a merge operator; the merge methods are {', '.join(merging)} "
                          "(`unlearnbench list methods`)")
    schema = OmegaConf.structured(section_class("MergeOptions", [], meth.Config))
    given = parse_overrides(options) if options else {}
    unknown_keys = set(given) - set(schema.keys())
    if unknown_keys:
        from ..errors import unknown

        raise unknown(f"option of {method}", sorted(unknown_keys)[0], schema.keys())
    cfg = merge_layer(schema, given, "-o options")
    check = getattr(meth, "check_config", None)
    if check is not None:
        check(cfg)
    engine = Engine.of(engine, "--engine")
    all_st = all(p.endswith(".safetensors") for p in [base_path, *ft_paths])
    chunked = engine == "chunked" or (engine == "auto" and all_st and getattr(meth, "elementwise", False))
    if chunked and not (all_st and getattr(meth, "elementwise", False)):
        raise ConfigError(f"--engine chunked needs safetensors inputs and an elementwise method "
                          f"({method} is {'not ' if not getattr(meth, 'elementwise', False) else ''}elementwise)")
    base = load_state_dict(base_path)
    keys = merge_keys(base)
    if chunked:  # every file byte read once, accumulators in cache (unlearnbench.merge.engine)
        from .engine import merge_safetensors

        tau = merge_safetensors(lambda: meth.chunk_reducer(cfg), ft_paths, base=base_path, keys=keys)
    else:
        red = meth.reducer(cfg)
        for p in ft_paths:  # streamed: one checkpoint resident at a time
            red.update(task_vector(load_state_dict(p), base, keys))
        tau = red.result()
    out = edited_state(base, tau, lam) if lam is not None else tau
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, output,
              metadata={"method": method, "lam": "" if lam is None else str(lam), "n": str(len(ft_paths))})
    from ..metrics import sparsity

    sp = sparsity(tau)
    return {"method": method, "n": len(ft_paths), "output": output, "wrote": "model" if lam is not None else
            "task_vector", "lam": lam, "sparsity_u_all": sp["u_all"], "tensors": len(out),
            "engine": "chunked" if chunked else "per-file", **({"kernel": _kernel_used(meth, cfg)} if chunked else {})}


def _kernel_used(meth, cfg) -> str:
    """What reduced the chunks: the fused C kernel, or torch (and why)."""
    from .engine import fused_op
    from .kernel import kernel_status

    if fused_op(meth.chunk_reducer(cfg)) is None:
        return "torch (this operator has no fused form)"
    return kernel_status()
