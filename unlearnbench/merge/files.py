"""Merging checkpoints a user already has, without our scenarios (``unlearnbench merge``).

Before any tensor is read, both engines refuse the same inputs with the same message: a non-finite
``lam``, an ``output`` that is one of the inputs (also through a link) or cannot be written, a
safetensors header that safetensors would refuse (``engine.read_index``), fine-tunes that do not
fit the base (``check.check_candidates``: tensor names, shapes, dtypes), a non-finite base. The
output is written atomically: a temporary file beside it, fsync, rename; an existing output
that is not an input is replaced."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from ..config import Choice
from ..data import load_state_dict
from ..errors import ConfigError, StoreError
from .check import check_candidates, check_finite_base, merged_keys, nonfinite, spec_of


def merge_keys(base: dict) -> list[str]:
    """The tensors that form τ: floating-point entries that are not BN statistics (PROTOCOL §3).

    A bare state dict does not say which entries are buffers, so BN running statistics are
    recognised by name (running_mean / running_var); integer tensors are never merged."""
    return merged_keys(spec_of(base))


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
    import torch
    from omegaconf import OmegaConf

    from ..config import merge_layer, parse_overrides, section_class
    from ..taskvec import edited_state

    check_lam(lam)
    check_output(output, [base_path, *ft_paths])  # before anything is read
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
    # what both engines check, in the same order, before reading a tensor: the safetensors headers ...
    from .engine import read_index

    headers = {p: {k: (e.dtype, e.shape) for k, e in read_index(p).items()}
               for p in [base_path, *ft_paths] if p.endswith(".safetensors")}
    base = load_state_dict(base_path)
    keys = merge_keys(base)
    ref = (base_path, spec_of(base))
    check_candidates(ref, [(p, headers[p]) for p in ft_paths if p in headers], keys)  # ... the files' fit ...
    check_finite_base(base_path, base)  # ... and a finite base
    if chunked:  # every file byte read once, accumulators in cache (unlearnbench.merge.engine)
        from .engine import merge_safetensors

        tau = merge_safetensors(lambda: meth.chunk_reducer(cfg), ft_paths, base=base_path, keys=keys)
    else:
        red = meth.reducer(cfg)
        for p in ft_paths:  # streamed: one checkpoint resident at a time
            ft = load_state_dict(p)
            check_candidates(ref, [(p, spec_of(ft))], keys)  # a torch file's fit is known once it is loaded
            red.update(_task_vector(p, ft, base, keys))
            del ft
        tau = red.result()
    for k, v in tau.items():
        if not bool(torch.isfinite(v).all()):
            raise StoreError(f"the merged task vector has non-finite values in tensor {k!r}: the {method} merge "
                             "overflowed float32 (the fine-tunes are too far from the base)")
    out = edited_state(base, tau, lam) if lam is not None else tau
    if lam is not None:
        for k in tau:
            if not bool(torch.isfinite(out[k]).all()):
                raise ConfigError(f"--lam {lam}: BASE − lam·τ is not finite in tensor {k!r} (it overflows "
                                  f"{str(out[k].dtype).removeprefix('torch.')}); use a smaller --lam")
    _write_atomic(Path(output), {k: v.contiguous() for k, v in out.items()},
                  {"method": method, "lam": "" if lam is None else str(lam), "n": str(len(ft_paths))})
    from ..metrics import sparsity

    sp = sparsity(tau)
    return {"method": method, "n": len(ft_paths), "output": output, "wrote": "model" if lam is not None else
            "task_vector", "lam": lam, "sparsity_u_all": sp["u_all"], "tensors": len(out),
            "engine": "chunked" if chunked else "per-file", **({"kernel": _kernel_used(meth, cfg)} if chunked else {})}


def _task_vector(path: str, ft: dict, base: dict, keys: list[str]) -> dict:
    """τ = FT − BASE (taskvec.task_vector), a non-finite tensor named with the file it is in."""
    from ..taskvec import task_vector

    tau = {}
    for k in keys:
        try:
            tau.update(task_vector(ft, base, [k]))
        except StoreError:  # names and shapes are checked: only a non-finite τ is left
            raise nonfinite(path, k) from None
    return tau


def check_lam(lam: float | None) -> None:
    if lam is not None and not math.isfinite(lam):
        raise ConfigError(f"--lam must be a finite number, not {lam}; e.g. --lam 1.0 (writes BASE − 1.0·τ)")


def check_output(output: str, inputs: list[str]) -> None:
    """Refuse an ``output`` that is one of ``inputs`` (the same path, or the same file through a
    symbolic or hard link), that is not named .safetensors, or whose folder cannot be written."""
    out = Path(output)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out {output}: merge writes a safetensors file; name it *.safetensors "
                          f"(e.g. --out {out.with_suffix('.safetensors')})")
    real = os.path.realpath(out)
    for i, p in enumerate(inputs):
        same = os.path.realpath(p) == real
        if not same and out.exists():
            try:
                same = os.path.samefile(p, out)
            except OSError:
                pass
        if same:
            what = "BASE" if i == 0 else f"FINETUNED {i} of {len(inputs) - 1}"
            raise ConfigError(f"--out {output} is an input ({what}: {p}); merge never writes over its inputs: "
                              "give another --out path")
    if out.is_dir():
        raise ConfigError(f"--out {output} is a folder; give the path of a .safetensors file")
    anc = Path(os.path.abspath(out)).parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"--out {output}: {anc} is a file, not a folder; give a path in a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {output}: the folder {anc} is not writable; give a path in a folder you can "
                          "write to")


def _write_atomic(path: Path, tensors: dict, metadata: dict) -> None:
    """Write a safetensors file so that ``path`` is the old file or the whole new one, never a part:
    a temporary file in the same folder, fsync, then rename over ``path``."""
    from safetensors.torch import save_file

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        save_file(tensors, tmp, metadata=metadata)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it 0600; an output gets the usual mode
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        try:
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)  # the rename itself survives a crash
            finally:
                os.close(dfd)
        except OSError:
            pass
    except OSError as e:
        raise StoreError(f"--out {path}: cannot write it ({e.strerror or e}); give a path in a folder you "
                         "can write to") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _kernel_used(meth, cfg) -> str:
    """What reduced the chunks: the fused C kernel, or torch (and why)."""
    from .engine import fused_op
    from .kernel import kernel_status

    if fused_op(meth.chunk_reducer(cfg)) is None:
        return "torch (this operator has no fused form)"
    return kernel_status()
