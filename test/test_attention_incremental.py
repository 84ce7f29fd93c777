"""Decoding through the cache equals the parallel forward, for every attention type.

fp32, max abs diff < 1e-4 at every real (non-padded) position: step by step, prefill
then steps, and arbitrary blocks; down_rate 1..5; lengths 1..40; batch 1..3; no
padding, right padding and left padding.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TYPE_CONFS, make_attention, padded_batch

TOLERANCE = 1e-4


def run_in_blocks(module, x, positions, padding, blocks):
    """Feed (B, T, D) through a fresh cache in consecutive blocks; outputs (B, T, D)."""
    cache = module.make_cache(x.shape[0])
    outputs, start = [], 0
    for size in blocks:
        part = slice(start, start + size)
        outputs.append(
            module(
                x[:, part],
                position=positions[:, part],
                key_padding_mask=None if padding is None else padding[:, part],
                cache=cache,
            )
        )
        start += size
    assert start == x.shape[1]
    return torch.cat(outputs, dim=1)


def max_diff_on_real(a, b, padding):
    diff = (a - b).abs().amax(dim=-1)  # (B, T)
    if padding is not None:
        diff = diff[~padding]
    return diff.max().item()


def check_all_schedules(module, x, positions, padding, prefill_len, blocks):
    with torch.no_grad():
        parallel = module(x, position=positions, key_padding_mask=padding)
        total = x.shape[1]
        schedules = {
            "step by step": [1] * total,
            "prefill then steps": [prefill_len] + [1] * (total - prefill_len),
            "blocks": blocks,
        }
        for label, schedule in schedules.items():
            incremental = run_in_blocks(module, x, positions, padding, schedule)
            diff = max_diff_on_real(incremental, parallel, padding)
            assert diff < TOLERANCE, f"{label} {schedule}: max abs diff {diff}"


@pytest.mark.parametrize("name", [n for n in TYPE_CONFS if n.startswith("mtla")])
def test_every_length_step_by_step(name):
    """down_rate 1..5 and every length 1..40, including lengths not divisible by s."""
    module = make_attention(name)
    x, positions, _ = padded_batch([40, 40], 40, "right", seed=1)
    with torch.no_grad():
        parallel = module(x, position=positions)
        for length in range(1, 41):
            stepped = run_in_blocks(
                module, x[:, :length], positions[:, :length], None, [1] * length
            )
            prefix = module(x[:, :length], position=positions[:, :length])
            # causal: a prefix of the sequence gives the prefix of the outputs
            assert (prefix - parallel[:, :length]).abs().max() < TOLERANCE
            assert (stepped - parallel[:, :length]).abs().max() < TOLERANCE, length


@pytest.mark.parametrize("name", sorted(TYPE_CONFS))
@settings(max_examples=20, deadline=None, derandomize=True)
@given(data=st.data())
def test_incremental_equals_parallel(name, data):
    total = data.draw(st.integers(1, 40), label="length")
    batch = data.draw(st.integers(1, 3), label="batch")
    side = data.draw(st.sampled_from([None, "right", "left"]), label="padding")
    lengths = [total] * batch
    if side is not None:
        lengths = [data.draw(st.integers(1, total), label="row length") for _ in range(batch)]
        lengths[data.draw(st.integers(0, batch - 1))] = total
    prefill_len = data.draw(st.integers(1, total), label="prefill")
    blocks, left = [], total
    while left:
        blocks.append(data.draw(st.integers(1, left), label="block"))
        left -= blocks[-1]
    seed = data.draw(st.integers(0, 2**16), label="seed")
    module = make_attention(name, seed=seed)
    x, positions, padding = padded_batch(lengths, total, side or "right", seed=seed)
    check_all_schedules(
        module, x, positions, padding if side else None, prefill_len, blocks
    )


@pytest.mark.parametrize("name", sorted(TYPE_CONFS))
def test_left_padded_rows_equal_rows_alone(name):
    """A row's outputs do not depend on the padding its batch neighbours impose."""
    module = make_attention(name, seed=3)
    lengths, total = [9, 4, 7], 9
    x, positions, padding = padded_batch(lengths, total, "left", seed=3)
    with torch.no_grad():
        batched = run_in_blocks(module, x, positions, padding, [5] + [1] * 4)
        for row, length in enumerate(lengths):
            alone_x = x[row : row + 1, total - length :]
            alone = module(alone_x, position=positions[row : row + 1, total - length :])
            diff = (batched[row, total - length :] - alone[0]).abs().max().item()
            assert diff < TOLERANCE, (row, diff)


@pytest.mark.parametrize("name", ["mha", "mla", "mtla_s2", "mtla_s3"])
def test_query_shorter_than_key(name):
    """A prefix that is attended to but not queried (memory mode, or only new queries)."""
    module = make_attention(name, seed=5)
    x, positions, _ = padded_batch([12, 12], 12, "right", seed=5)
    with torch.no_grad():
        full = module(x, position=positions)
        for query_len in (1, 4, 12):
            part = module(x[:, -query_len:], x, position=positions)
            assert (part - full[:, -query_len:]).abs().max() < TOLERANCE
            cache = module.make_cache(2)
            prompt = module(x[:, 7:8], x[:, :8], position=positions[:, :8], cache=cache)
            rest = run_in_blocks_from(module, cache, x, positions, 8)
            assert (prompt - full[:, 7:8]).abs().max() < TOLERANCE
            assert (rest - full[:, 8:]).abs().max() < TOLERANCE


def run_in_blocks_from(module, cache, x, positions, start):
    outputs = [
        module(x[:, t : t + 1], position=positions[:, t : t + 1], cache=cache)
        for t in range(start, x.shape[1])
    ]
    return torch.cat(outputs, dim=1)


def test_training_mode_gradients_match_between_paths():
    """The parallel path is differentiable and its gradients reach the hyper-network."""
    module = make_attention("mtla_s3").train()
    x, positions, padding = padded_batch([10, 6], 10, "right", seed=7)
    x.requires_grad_(True)
    out = module(x, position=positions, key_padding_mask=padding)
    out[~padding].square().sum().backward()
    assert module.hypernet_down.fc_p.weight.grad.abs().sum() > 0
    assert x.grad[padding].abs().max() == 0  # padding never influences real outputs


@pytest.mark.parametrize("name", ["mla", "mtla_s2", "mtla_s3", "mtla_s3_qlora", "mtla_s3_offset"])
def test_probabilities_of_cached_steps_equal_the_parallel_forward(name):
    """need_weights: a prefill then steps through the cache give, placed at the key
    positions they return, the probabilities of one parallel forward; the outputs are
    those of the call without weights. Types without weights refuse clearly."""
    module = make_attention(name)
    x = torch.randn(2, 9, module.embed_dim)
    out, (weights, key_positions) = module(x, need_weights=True)
    assert torch.allclose(out, module(x), atol=TOLERANCE)
    assert torch.equal(key_positions, torch.arange(9).expand(2, -1))
    cache = module.make_cache(2)
    module(x[:, :4], cache=cache)  # a prefill, then one step at a time
    for step in range(4, 9):
        _, (got, positions) = module(x[:, step:step + 1], position=torch.full((2, 1), step),
                                     cache=cache, need_weights=True)
        placed = torch.zeros(2, got.shape[1], 1, 10)
        index = torch.where(positions >= 0, positions, 9)[:, None, None, :].expand_as(got)
        placed.scatter_add_(3, index, got)
        assert torch.allclose(placed[..., :9], weights[:, :, step:step + 1], atol=TOLERANCE)
    with pytest.raises(NotImplementedError, match="need_weights"):
        make_attention("mha")(x, need_weights=True)


@pytest.mark.parametrize("name", [n for n in TYPE_CONFS if n.startswith("mtla")])
@pytest.mark.parametrize("side", [None, "left", "right"])
def test_prefill_in_query_chunks_equals_one_call(name, side, monkeypatch):
    """An inference prefill longer than PREFILL_CHUNK builds the stride-aware mask for
    PREFILL_CHUNK queries at a time (memory linear in the prompt): the same outputs as
    one call and as the step-by-step cache, alone and continuing a cache, with chunk
    sizes that divide neither the prompt nor s."""
    import espnet2_mtla.attention.mtla as mtla

    module = make_attention(name, seed=7)
    lengths = [23, 23, 23] if side is None else [23, 9, 16]
    x, positions, padding = padded_batch(lengths, 23, side or "right", seed=7)
    padding = padding if side else None
    with torch.no_grad():
        whole = module(x, position=positions, key_padding_mask=padding)
        stepped = run_in_blocks(module, x, positions, padding, [1] * 23)
    rows_asked = []
    dense_mask = mtla.MultiheadTemporalLatentAttention._stride_aware_mask

    def recording_mask(self, positions, query_len, padding, start=0, stop=None):
        rows_asked.append((query_len if stop is None else stop) - start)
        return dense_mask(self, positions, query_len, padding, start, stop)

    monkeypatch.setattr(mtla.MultiheadTemporalLatentAttention, "_stride_aware_mask", recording_mask)
    monkeypatch.setattr(mtla, "PREFILL_CHUNK", 4)
    with torch.no_grad():
        chunked = module(x, position=positions, key_padding_mask=padding)
        continued = run_in_blocks(module, x, positions, padding, [5, 13, 1, 4])
    if name == "mtla_s1" and side is None:  # MLA, nothing padded: causal aligned to the
        assert not rows_asked  # bottom right after the cache, no mask built at all
    else:
        assert rows_asked and max(rows_asked) <= 5  # never the whole prompt's mask at once
    for label, out in (("one call", chunked), ("continuing a cache", continued)):
        assert max_diff_on_real(out, whole, padding) < TOLERANCE, label
        assert max_diff_on_real(out, stepped, padding) < TOLERANCE, label


def count_calls(monkeypatch, cls, name):
    """Patch cls.name to count its calls (a list holding the count)."""
    calls, method = [0], getattr(cls, name)

    def counted(self, *args, **kwargs):
        calls[0] += 1
        return method(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    return calls


@pytest.mark.parametrize("name", ["mtla_s2", "mtla_s3", "mtla_s4", "mtla_s3_qlora",
                                  "mtla_s3_offset"])
def test_strided_prefill_without_a_mask_equals_the_masked_path(name, monkeypatch):
    """s > 1, nothing padded: blocks that start a chunk attend without a mask (the held
    and new entries causally per chunk offset, each query's own column merged in by the
    log-sum-exp; on CUDA only, forced here onto the CPU's explicit scores): the outputs
    of the parallel forward. Blocks that start mid-chunk keep the masked path."""
    import espnet2_mtla.attention.mtla as mtla

    module = make_attention(name, seed=3)
    s = module.down_rate
    x, positions, _ = padded_batch([40, 40, 40], 40, "right", seed=3)
    with torch.no_grad():
        parallel = module(x, position=positions)
    monkeypatch.setattr(mtla, "STRIDED_PREFILL_DEVICES", ("cuda", "cpu"))
    calls = count_calls(monkeypatch, mtla.MultiheadTemporalLatentAttention, "_strided_prefill")
    aligned = [s, 2, 3 * s, 40 - 4 * s - 2]  # with s > 2 the last two start mid-chunk
    cases = {"aligned": (aligned, 4 if s == 2 else 2), "one call": ([40], 1),
             "none aligned": ([1, 2 * s, 40 - 2 * s - 1], 0)}
    for label, (blocks, strided_blocks) in cases.items():
        calls[0] = 0
        with torch.no_grad():
            incremental = run_in_blocks(module, x, positions, None, blocks)
        assert calls[0] == strided_blocks, label
        assert max_diff_on_real(incremental, parallel, None) < TOLERANCE, label
    calls[0] = 0
    with torch.no_grad():  # without a cache: the new chunks' entries alone
        uncached = module(x, position=positions)
    assert calls[0] == 1
    assert max_diff_on_real(uncached, parallel, None) < TOLERANCE


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("down_rate", [2, 3, 4])
def test_strided_prefill_on_the_gpu_matches_the_masked_path(down_rate, dtype, monkeypatch):
    """On CUDA the mask-free prefill of s > 1 (flash kernel in fp16 / bf16, the
    memory-efficient one in fp32, both with their log-sum-exp) against the masked path
    (GPU kernels off), blocks of a long prompt starting chunks: fp32 within 1e-4; in
    half precision no further from the fp32 result than the masked path is, give or take
    rounding."""
    import espnet2_mtla.attention.mtla as mtla
    from espnet2_mtla.attention.factory import build_attention
    from espnet2_mtla.kernels import kernels_set

    torch.manual_seed(0)
    module = build_attention("mtla", 256, 4, kv_lora_rank=64, qk_nope_head_dim=32,
                             qk_rope_head_dim=16, v_head_dim=32, down_rate=down_rate,
                             bias=True).cuda().eval()
    with torch.no_grad():
        module.hypernet_down.fc_p.weight.normal_(0, 64 ** -0.5)
    x = torch.randn(3, 600, 256, device="cuda")
    blocks = [120 * down_rate, 24 * down_rate, 600 - 144 * down_rate]
    positions = torch.arange(600, device="cuda").expand(3, -1)
    with torch.no_grad(), kernels_set(False):  # the masked path, fp32
        reference = run_in_blocks(module, x, positions, None, blocks).float()
    with torch.no_grad():
        low = module.to(dtype)
        calls = count_calls(monkeypatch, mtla.MultiheadTemporalLatentAttention,
                            "_strided_prefill")
        strided = run_in_blocks(low, x.to(dtype), positions, None, blocks).float()
        with kernels_set(False):
            masked = run_in_blocks(low, x.to(dtype), positions, None, blocks).float()
    assert calls[0] == len(blocks)
    if dtype == torch.float32:
        assert (strided - reference).abs().max().item() < 1e-4
    else:
        error, masked_error = ((y - reference).abs().max().item() for y in (strided, masked))
        assert error <= 1.5 * masked_error + 1e-3, (error, masked_error)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("query_len,key_len", [(37, 37), (37, 100), (37, 36), (37, 5)])
def test_causal_attention_with_lse_on_the_gpu_matches_the_math(query_len, key_len, dtype):
    """The CUDA kernels' bottom-right causal attention and log-sum-exp (flash in half
    precision, memory-efficient in fp32) against the explicit scores on the CPU, queries
    strided as the strided prefill takes them, keys and values views of one buffer, and
    more queries than keys (the first see none: output 0, log-sum-exp -inf)."""
    from espnet2_mtla.attention.base import causal_attention_with_lse

    generator = torch.Generator().manual_seed(key_len)
    q = torch.randn(2, 3 * query_len, 4, 48, generator=generator)[:, 1::3].transpose(1, 2)
    kv = torch.randn(2, key_len, 4, 96, generator=generator)
    k, v = kv[..., :48].transpose(1, 2), kv[..., 48:].transpose(1, 2)
    want_out, want_lse = causal_attention_with_lse(q, k, v, 0.3)
    got_out, got_lse = causal_attention_with_lse(*(t.cuda().to(dtype) for t in (q, k, v)), 0.3)
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got_out.float().cpu(), want_out, atol=tolerance, rtol=0)
    torch.testing.assert_close(got_lse.cpu(), want_lse, atol=tolerance, rtol=0)
    assert bool(torch.isneginf(got_lse[:, :, : max(0, query_len - key_len)]).all())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_mla_prefill_on_the_gpu_from_one_key_buffer_matches_the_cpu(dtype, monkeypatch):
    """MLA's inference prefill on CUDA (causal, bottom right after a cache) takes its
    keys and zero-padded values from one buffer: the outputs of the CPU's path, fp32
    within 1e-4, half precision within a few of its rounding steps."""
    import espnet2_mtla.attention.mtla as mtla
    from espnet2_mtla.attention.factory import build_attention

    torch.manual_seed(0)
    module = build_attention("mla", 256, 4, kv_lora_rank=64, qk_nope_head_dim=32,
                             qk_rope_head_dim=16, v_head_dim=32, bias=True).eval()
    x = torch.randn(3, 600, 256)
    positions = torch.arange(600).expand(3, -1)
    blocks = [250, 50, 300]
    with torch.no_grad():
        reference = run_in_blocks(module, x, positions, None, blocks)
        calls = count_calls(monkeypatch, mtla.MultiheadTemporalLatentAttention,
                            "_expand_keys_padded")
        got = run_in_blocks(module.cuda().to(dtype), x.cuda().to(dtype), positions.cuda(),
                            None, blocks).float().cpu()
    assert calls[0] == len(blocks)
    tolerance = 1e-4 if dtype == torch.float32 else (
        4 * torch.finfo(dtype).eps * reference.abs().max().item() + 1e-3)
    assert (got - reference).abs().max().item() < tolerance
