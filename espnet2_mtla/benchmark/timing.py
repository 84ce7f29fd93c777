"""Timing on the device (CUDA events, or a host clock on the CPU), CUDA-graph replay
timing, peak memory, and a step's FLOPs (the arithmetic bound of a comparison)."""

import gc
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from espnet2_mtla.kernels import kernels_set


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, device, repeats=20, warmup=3):
    """Median seconds of fn() (device events on CUDA, a host clock on the CPU)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            begin = time.perf_counter()
            fn()
            times.append(time.perf_counter() - begin)
    return sorted(times)[len(times) // 2]


def graph_replay_time(step, restore_state, device, repeats=20):
    """Median seconds of one replay of ``step`` captured in a CUDA graph (GPU time alone,
    no Python or launch overhead); NaN where capture is not possible."""
    if device.type != "cuda":
        return float("nan")
    try:
        # warm-up on the current stream: a new side stream per call (the pool has 32) gave
        # each its own cuBLAS workspace (32 MiB on Hopper), kept for the process: ~0.8-1 GB
        # allocated after a decode section, in every later peak
        for _ in range(2):
            restore_state()
            step()
        restore_state()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return median_time(graph.replay, device, repeats=repeats)
    except Exception as error:  # e.g. a host sync inside the step
        print(f"  (no CUDA graph: {type(error).__name__}: {str(error)[:80]})")
        return float("nan")


def fresh_memory(device):
    """Return the caching allocator's free blocks (a variant measured after another
    starts from the same allocator state as one measured first)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device):
    return torch.cuda.max_memory_allocated() if device.type == "cuda" else float("nan")


def allocated_memory(device):
    """Bytes the caching allocator hands out now (what a peak measured from here starts
    from: the model's weights, and anything an earlier measurement left alive)."""
    return torch.cuda.memory_allocated() if device.type == "cuda" else float("nan")


def attention_flops(query, key, value, backward=False) -> int:
    """FLOPs of fused attention from the shapes of query (B, H, Tq, Dqk), key (B, Hkv, Tk,
    Dqk) and value (B, Hkv, Tk, Dv): the two products per query head, QK^T and PV; the
    backward recomputes QK^T and forms dP, dV, dQ and dK. Grouped key/value heads
    (Hkv < H) and a value width other than the key's (MLA: 96 / 64) are counted as done;
    torch's own formula refuses both (torch 2.11 asserts equal heads and widths)."""
    batch, heads, queries, qk_dim = query
    pairs = 2 * batch * heads * queries * key[-2]
    return pairs * (3 * qk_dim + 2 * value[-1]) if backward else pairs * (qk_dim + value[-1])


def _forward_attention_flops(query, key, value, *args, out_shape=None, **kwargs):
    return attention_flops(query, key, value)


def _backward_attention_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs):
    return attention_flops(query, key, value, backward=True)


def _attention_flop_formulas():
    """The fused SDPA operators (query, key, value first; backward: grad_out first)."""
    aten = torch.ops.aten
    formulas = {}
    for backend in ("efficient_attention", "flash_attention", "cudnn_attention"):
        for suffix, formula in (("", _forward_attention_flops),
                                ("_backward", _backward_attention_flops)):
            name = f"_scaled_dot_product_{backend}{suffix}"
            if hasattr(aten, name):
                formulas[getattr(aten, name)] = formula
    return formulas


def count_flops(step) -> int:
    """FLOPs of one call of ``step``, counted on the dense SDPA path (the flop counter
    cannot trace FlexAttention; the dense path does the same products, masked positions
    included); fused attention by ``attention_flops``."""
    with kernels_set(False), FlopCounterMode(display=False,
                                             custom_mapping=_attention_flop_formulas()) as counter:
        step()
    return counter.get_total_flops()
