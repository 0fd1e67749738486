"""What both merge engines refuse, and how they say it: one set of checks, one set of messages.

The chunked engine reads tensors straight from safetensors files (``engine.read_index``
validates their headers as safetensors itself does); the per-file engine loads whole
checkpoints (``unlearnbench.data.load_state_dict``, safetensors or torch). What neither
loader checks is whether the files fit together as a base and its fine-tunes. That is here,
on a *spec* of each file ({tensor name: (dtype, shape)}, the safetensors dtype names; from a
header or from loaded tensors), so the two engines refuse the same inputs with the same
message (tests/test_bad_inputs_merge.py):

- every fine-tune has exactly the base's tensor names: an extra or a missing tensor is an
  error naming it, never a silent drop;
- every tensor has the base's shape;
- the merged tensors (τ's: the base's floating-point entries that are not BN statistics) are
  F16, BF16, F32 or F64 in the base and in every fine-tune, and no fine-tune is floating
  where the base is not (an integer entry is never merged, so a fine-tune must not disagree);
- values are finite: the base's (``check_finite_base``) and every task vector's
  (``nonfinite``: the message names the file the values are in).

Importing this module never imports torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from ..errors import StoreError

if TYPE_CHECKING:
    import torch

Spec = Mapping[str, "tuple[str, tuple[int, ...]]"]

# safetensors' dtypes and their sizes in bits (safetensors 0.4-0.8); a header naming another is refused
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6,
              "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
              "I64": 64, "U64": 64, "F64": 64}
FLOATING = {"F4", "F6_E2M3", "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F16", "BF16", "F32", "F64"}
READABLE = ("F16", "BF16", "F32", "F64")  # what a merge reads (upcast to fp32)
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")
_TORCH_NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
                "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "uint16": "U16",
                "uint32": "U32", "uint64": "U64", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
                "float8_e8m0fnu": "F8_E8M0"}


def dtype_name(dtype: "torch.dtype") -> str:
    """A torch dtype under its safetensors name (F32, I64, ...); others as torch spells them."""
    s = str(dtype).removeprefix("torch.")
    return _TORCH_NAMES.get(s, s)


def spec_of(state: Mapping[str, "torch.Tensor"]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The spec of a loaded state dict: {name: (safetensors dtype name, shape)}."""
    return {k: (dtype_name(v.dtype), tuple(v.shape)) for k, v in state.items()}


def merged_keys(spec: Spec) -> list[str]:
    """The tensors that form τ: floating-point entries that are not BN statistics (PROTOCOL §3).

    A bare state dict does not say which entries are buffers, so BN running statistics are
    recognised by name (running_mean / running_var); integer tensors are never merged."""
    return [k for k, (dt, _) in spec.items() if dt in FLOATING and not k.endswith(BN_STATS)]


def _names(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _shape(s: tuple[int, ...]) -> str:
    return str(tuple(s))


def check_candidates(ref: tuple[str, Spec], candidates: list[tuple[str, Spec]], keys: list[str],
                     ref_is_base: bool = True) -> None:
    """Refuse candidates (fine-tunes, or task vectors when there is no base) that do not fit
    ``ref`` (the base, or with ``ref_is_base=False`` the first task vector file), ``keys``
    being the tensors merged. Raises StoreError naming the file and the tensor."""
    ref_path, ref_spec = ref
    if not keys:
        raise StoreError(f"{ref_path}: has no floating-point tensors to merge (BN statistics and integer "
                         "tensors are never merged); is this file a model checkpoint?")
    who = f"BASE {ref_path}" if ref_is_base else f"the first file {ref_path}"
    for k in keys:
        dt = ref_spec[k][0]
        if dt not in READABLE:
            raise StoreError(f"{ref_path}: tensor {k!r} has dtype {dt}, which merge does not read; the merged "
                             f"tensors must be {', '.join(READABLE)} (convert the file to F32)")
    merged = set(keys)
    for path, spec in candidates:
        if path == ref_path and not ref_is_base:
            continue
        missing = [k for k in ref_spec if k not in spec]
        if missing:
            raise StoreError(f"{path}: lacks {len(missing)} tensor(s) that {who} has: {_names(missing)}; every "
                             "fine-tune must hold the same tensors as the base (a checkpoint of the same "
                             "architecture, saved the same way)")
        extra = [k for k in spec if k not in ref_spec]
        if extra:
            raise StoreError(f"{path}: has {len(extra)} tensor(s) that {who} lacks: {_names(extra)}; merge does "
                             "not drop tensors silently: give the base they belong to, or remove them from "
                             "the fine-tune")
        for k, (rdt, rshape) in ref_spec.items():
            dt, shape = spec[k]
            if tuple(shape) != tuple(rshape):
                raise StoreError(f"{path}: tensor {k!r} has shape {_shape(shape)}, {who} has {_shape(rshape)}; "
                                 "every fine-tune must have the base's shapes (same architecture)")
            if k in merged and dt not in READABLE:
                raise StoreError(f"{path}: tensor {k!r} has dtype {dt}, but a fine-tune's merged tensors are "
                                 f"floating point, one of {', '.join(READABLE)} (is this file a checkpoint of "
                                 "the model?)")
            if k not in merged and dt in FLOATING and rdt not in FLOATING:
                raise StoreError(f"{path}: tensor {k!r} is {dt}, but {who} has it as {rdt}, which is never "
                                 "merged; the base and its fine-tunes must agree on which tensors are "
                                 "floating point")


def check_finite_base(path: str, state: Mapping[str, "torch.Tensor"]) -> None:
    """Refuse a base with a NaN or inf in any floating-point tensor (parameters and buffers)."""
    import torch

    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise nonfinite_base(path, k)


def nonfinite_base(path: str, name: str) -> StoreError:
    return StoreError(f"{path}: BASE has non-finite values (NaN or inf) in tensor {name!r}; the base model "
                      "must be finite: fix it or give another base")


def nonfinite(path: str, name: str, with_base: bool = True) -> StoreError:
    """The error for a task vector (the file − BASE, or the file itself) with a NaN or inf."""
    what = "the task vector (this file − BASE)" if with_base else "the task vector"
    return StoreError(f"{path}: {what} has non-finite values (NaN or inf) in tensor {name!r}; a non-finite "
                      "candidate is refused, not zeroed (PROTOCOL §3): fix this file or leave it out")
