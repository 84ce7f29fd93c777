"""GPU kernels (Triton, and FlexAttention compiled to Triton for MTLA training), used
automatically on CUDA; the PyTorch paths are the fallback and the oracle.
``ESPNET2_MTLA_KERNELS=0`` turns them off for a process; ``with kernels_set(False):`` (or
``set_kernels_enabled(False)``) inside one, e.g. to compare both in a benchmark.
"""

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


def latent_decode_kernel(query, rank: int):
    """The Triton latent-cache decode function if it applies to ``query``, else None."""
    if not (_enabled and query.is_cuda):
        return None
    try:
        from espnet2_mtla.kernels import latent_decode
    except ImportError:  # triton not installed
        return None
    return latent_decode.latent_attention_decode if latent_decode.supports(query, rank) else None


def latent_shared_decode_kernel(query, rank: int, group_size: int):
    """The Triton decode over [shared prefix; own entries] if it applies, else None."""
    if not (_enabled and query.is_cuda):
        return None
    try:
        from espnet2_mtla.kernels import latent_decode
    except ImportError:
        return None
    if not latent_decode.supports_shared(query, rank, group_size):
        return None
    return latent_decode.latent_attention_decode_shared


def latent_update_kernel(entries, rank: int, rope_dim: int):
    """The Triton single-step cache update if it applies, else None."""
    if not (_enabled and entries.is_cuda):
        return None
    try:
        from espnet2_mtla.kernels import latent_update
    except ImportError:
        return None
    return latent_update.latent_add_step if latent_update.supports(rank, rope_dim) else None
