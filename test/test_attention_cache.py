"""Cache size formulas and beam-search reordering."""

import math

import pytest
import torch

from conftest import LATENT_CONF, NUM_HEADS, EMBED_DIM, TYPE_CONFS, make_attention, padded_batch

TOLERANCE = 1e-4


def expected_nbytes(name, module, batch, steps, itemsize):
    attention_type, conf = TYPE_CONFS[name]
    if attention_type in ("mha", "mqa", "gqa"):
        kv_heads = {"mha": NUM_HEADS, "mqa": 1, "gqa": conf.get("num_kv_heads")}[attention_type]
        return 2 * batch * steps * kv_heads * (EMBED_DIM // NUM_HEADS) * itemsize
    width = LATENT_CONF["kv_lora_rank"] + LATENT_CONF["qk_rope_head_dim"]
    down_rate = conf.get("down_rate", 1)
    return batch * math.ceil(steps / down_rate) * width * itemsize


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nbytes_follows_the_formula_after_every_step(attention_name, dtype):
    module = make_attention(attention_name, dtype=dtype)
    batch, total, prefill = 3, 23, 5
    x, positions, _ = padded_batch([total] * batch, total, "right", dtype=dtype)
    cache = module.make_cache(batch)
    itemsize = torch.tensor([], dtype=dtype).element_size()
    assert cache.nbytes() == 0
    with torch.no_grad():
        module(x[:, :prefill], position=positions[:, :prefill], cache=cache)
        assert cache.nbytes() == expected_nbytes(attention_name, module, batch, prefill, itemsize)
        for step in range(prefill, total):
            module(x[:, step : step + 1], position=positions[:, step : step + 1], cache=cache)
            expected = expected_nbytes(attention_name, module, batch, step + 1, itemsize)
            assert cache.nbytes() == expected, step
            # the sync-free bound: exact, or one entry per row more
            one_entry_per_row = expected_nbytes(attention_name, module, batch, 1, itemsize)
            assert expected <= cache.nbytes_bound() <= expected + one_entry_per_row


@pytest.mark.parametrize("split", [1, 6, 7])
def test_reordered_cache_equals_reordered_batch_from_scratch(attention_name, split):
    """Beam search: reorder after ``split`` steps == decoding the reordered batch."""
    module = make_attention(attention_name, seed=11)
    batch, total = 3, 13
    x, positions, _ = padded_batch([total] * batch, total, "right", seed=11)
    beam_index = torch.tensor([2, 0, 0, 1, 2])  # repeats, drops nothing, grows the batch
    with torch.no_grad():
        cache = module.make_cache(batch)
        module(x[:, :split], position=positions[:, :split], cache=cache)
        cache.reorder(beam_index)
        reordered_x, reordered_pos = x[beam_index], positions[beam_index]
        continued = torch.cat(
            [
                module(reordered_x[:, t : t + 1], position=reordered_pos[:, t : t + 1], cache=cache)
                for t in range(split, total)
            ],
            dim=1,
        )
        from_scratch = module(reordered_x, position=reordered_pos)
    assert (continued - from_scratch[:, split:]).abs().max() < TOLERANCE


def test_reorder_with_different_histories_picks_the_right_rows(attention_name):
    """Rows with different contents: after reorder each row continues its own history."""
    module = make_attention(attention_name, seed=12)
    x, positions, _ = padded_batch([10, 10], 10, "right", seed=12)
    swap = torch.tensor([1, 0])
    with torch.no_grad():
        cache = module.make_cache(2)
        module(x[:, :6], position=positions[:, :6], cache=cache)
        cache.reorder(swap)
        out = module(x[swap, 6:], position=positions[:, 6:], cache=cache)
        expected = module(x[swap], position=positions)[:, 6:]
        unswapped = module(x, position=positions)[:, 6:]
    assert (out - expected).abs().max() < TOLERANCE
    assert (out - unswapped).abs().max() > 1e-2  # the reorder did change something


def test_incremental_state_dict_matches_explicit_cache():
    """fairseq-style incremental_state holds the same cache as passing cache=."""
    module = make_attention("mtla_s2", seed=4)
    x, positions, _ = padded_batch([9, 9], 9, "right", seed=4)
    state, cache = {}, module.make_cache(2)
    with torch.no_grad():
        for t in range(9):
            part = slice(t, t + 1)
            a = module(x[:, part], x[:, part], x[:, part], position=positions[:, part],
                       incremental_state=state)
            b = module(x[:, part], position=positions[:, part], cache=cache)
            assert torch.equal(a, b)
            if t == 4:
                order = torch.tensor([1, 0])
                module.reorder_incremental_state(state, order)
                cache.reorder(order)
                x = x[order]


def test_offset_gain_is_off_by_default_and_starts_as_the_module_without_it():
    """offset_gain=False keeps the reference's parameter names; turned on, the gain
    (s, r) starts at one (the same outputs) and a gain of one offset changes only the
    positions that see a chunk holding that offset."""
    from espnet2_mtla.attention import build_attention

    torch.manual_seed(0)
    plain = build_attention("mtla", EMBED_DIM, NUM_HEADS, **LATENT_CONF, down_rate=2).eval()
    gained = build_attention("mtla", EMBED_DIM, NUM_HEADS, **LATENT_CONF, down_rate=2,
                             offset_gain=True).eval()
    assert "kv_offset_gain" not in plain.state_dict()
    assert gained.kv_offset_gain.shape == (2, LATENT_CONF["kv_lora_rank"])
    gained.load_state_dict({**plain.state_dict(), "kv_offset_gain": gained.kv_offset_gain})
    x, positions, _ = padded_batch([6], 6, "right", seed=0)
    with torch.no_grad():
        before = plain(x, position=positions)
        assert torch.allclose(gained(x, position=positions), before, atol=1e-6)
        gained.kv_offset_gain[1].mul_(3.0)  # odd positions: the second of each chunk
        after = gained(x, position=positions)
    changed = (after - before).abs().amax(-1)[0] > 1e-5  # (T,)
    # position 0 sees only itself (offset 0); every later one sees an odd position
    assert changed.tolist() == [False, True, True, True, True, True]


def test_merge_without_entries_gives_the_same_columns_and_no_entries():
    """A training step writes no cache: merge_chunks(with_entries=False) skips the
    chunks' entries, and the columns every query attends stay those of the full merge
    (padding, a carried chunk and an unmerged prefix included)."""
    from espnet2_mtla.attention.cache import merge_chunks

    torch.manual_seed(0)
    latent, k_pe = torch.randn(2, 7, 8), torch.randn(2, 7, 4)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 3, 4, 5, 6, 7, 8]])
    padding = torch.tensor([[False] * 7, [True, False, False, False, False, False, False]])
    carry = (torch.randn(2, 8), torch.tensor([0, 1]))
    for args in ((positions, None, None, 3, 0), (positions, padding, carry, 2, 0),
                 (positions + 1, padding, carry, 2, 2)):
        full = merge_chunks(latent, k_pe, *args)
        short = merge_chunks(latent, k_pe, *args, with_entries=False)
        assert torch.equal(short[0], full[0]) and torch.equal(short[1], full[1])
        assert short[2] is None and short[3] is None and full[2] is not None
        assert (short[4] is None) == (full[4] is None)
        if full[4] is not None:
            assert torch.equal(short[4], full[4])
