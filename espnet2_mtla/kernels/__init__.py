"""GPU kernels (Triton, and FlexAttention compiled to Triton for MTLA training), used
automatically on CUDA; the PyTorch paths are the fallback and the oracle.
``ESPNET2_MTLA_KERNELS=0`` turns them off for a process; ``with kernels_set(False):`` (or
``set_kernels_enabled(False)``) inside one, e.g. to compare both in a benchmark.
"""

import importlib
import os
from contextlib import contextmanager

_enabled = os.environ.get("ESPNET2_MTLA_KERNELS", "1") != "0"


def set_kernels_enabled(enabled: bool):
    global _enabled
    _enabled = bool(enabled)


def kernels_enabled() -> bool:
    """Whether GPU kernels (Triton, compiled FlexAttention) may be used at all."""
    return _enabled


@contextmanager
def kernels_set(enabled: bool):
    """GPU kernels on or off inside the block; the previous setting restored after it."""
    before = _enabled
    set_kernels_enabled(enabled)
    try:
        yield
    finally:
        set_kernels_enabled(before)


def _triton_module(tensor, name: str):
    """The kernel module ``name`` where GPU kernels may run on ``tensor`` (enabled, on
    CUDA, triton installed), else None."""
    if not (_enabled and tensor.is_cuda):
        return None
    try:
        return importlib.import_module(f"espnet2_mtla.kernels.{name}")
    except ImportError:  # triton not installed
        return None


def latent_decode_kernel(query, rank: int):
    """The Triton latent-cache decode function if it applies to ``query``, else None."""
    module = _triton_module(query, "latent_decode")
    return module.latent_attention_decode if module and module.supports(query, rank) else None


def latent_shared_decode_kernel(query, rank: int, group_size: int):
    """The Triton decode over [shared prefix; own entries] if it applies, else None."""
    module = _triton_module(query, "latent_decode")
    if module and module.supports_shared(query, rank, group_size):
        return module.latent_attention_decode_shared
    return None


def latent_update_kernel(entries, rank: int, rope_dim: int, merge=None):
    """The Triton single-step cache update if it applies (with ``merge``'s weights
    computed in it, where given), else None."""
    module = _triton_module(entries, "latent_update")
    if module is None or not module.supports(rank, rope_dim):
        return None
    return module.latent_add_step if merge is None or module.supports_merge(merge) else None


def row_reorder_kernel(buffer, spare):
    """The Triton in-place reorder of a static cache buffer's held slots (through
    ``spare``) if it applies, else None."""
    module = _triton_module(buffer, "row_reorder")
    fits = buffer.is_contiguous() and spare.is_contiguous() and buffer.dim() >= 2
    return module.reorder_rows_in_place if module and fits else None
