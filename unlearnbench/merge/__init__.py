"""Merging checkpoints from files (``unlearnbench merge``), apart from the run pipeline.

- ``engine``: the chunked engine over safetensors files (each byte read once) and the
  chunk-reducer protocol it asks of a merge method (``ChunkReducer``, ``FusedReducer``);
- ``kernel``: the fused C kernel (kernel.c) for it, built with the system compiler, and its loader;
- ``files``: merging checkpoints a user already has, safetensors or torch state dicts;
- ``check``: what both engines refuse (files that do not fit the base, non-finite values), one
  function and one message for each, so ``--engine chunked`` and ``per-file`` refuse alike.

Importing this package never imports torch.
"""
from __future__ import annotations

from .engine import ChunkReader, ChunkReducer, Entry, FusedReducer, fused_op, merge_safetensors, read_index
from .files import Engine, merge_files, merge_keys
from .kernel import OPS, kernel_status  # not kernel(): the name stays the module's

__all__ = [
    "ChunkReader", "ChunkReducer", "Engine", "Entry", "FusedReducer", "OPS", "fused_op", "kernel_status",
    "merge_files", "merge_keys", "merge_safetensors", "read_index",
]
