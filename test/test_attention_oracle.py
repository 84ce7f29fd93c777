"""Against the reference ``mtla`` package (0.3.2) as a numerical oracle.

Weights are copied both ways; parallel and incremental outputs must agree to 1e-5 in
fp32. The reference decodes down_rate 1 wrongly, so incremental comparisons use s >= 2.
"""

import importlib.util

import pytest
import torch

from espnet2_mtla import MultiheadTemporalLatentAttention

TOLERANCE = 1e-5


def load_reference_class():
    """The reference class, without importing its Transformers part if that breaks."""
    try:
        from mtla.MTLA import MultiheadTemporalLatentAttention as reference
        return reference
    except ImportError as error:
        spec = importlib.util.find_spec("mtla")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip(f"reference package mtla==0.3.2 is not installed ({error})")
        path = spec.submodule_search_locations[0] + "/MTLA.py"
        module_spec = importlib.util.spec_from_file_location("mtla_reference_module", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.MultiheadTemporalLatentAttention


CONFIGS = [
    dict(embed_dim=64, num_heads=4, kv_lora_rank=32, qk_nope_head_dim=8,
         qk_rope_head_dim=8, v_head_dim=8, down_rate=2),
    dict(embed_dim=64, num_heads=4, kv_lora_rank=32, qk_nope_head_dim=8,
         qk_rope_head_dim=8, v_head_dim=16, down_rate=3, q_lora_rank=24),
    dict(embed_dim=48, num_heads=2, kv_lora_rank=16, qk_nope_head_dim=12,
         qk_rope_head_dim=4, v_head_dim=8, down_rate=4, q_lora_rank=8),
    dict(embed_dim=96, num_heads=8, kv_lora_rank=64, qk_nope_head_dim=16,
         qk_rope_head_dim=8, v_head_dim=16, down_rate=5),
]


def pair(conf, seed, **extra):
    reference_class = load_reference_class()
    torch.manual_seed(seed)
    reference = reference_class(**conf, **extra).eval()
    with torch.no_grad():
        for param in reference.parameters():  # move biases and norms off their init
            param.add_(0.05 * torch.randn_like(param))
    ours = MultiheadTemporalLatentAttention(**conf, **extra).eval()
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def inputs(conf, batch, length, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, conf["embed_dim"], generator=generator)
    position = torch.arange(length, dtype=torch.float32).view(1, -1).expand(batch, -1)
    return x, position


def test_state_dicts_load_both_ways():
    reference_class = load_reference_class()
    for conf in CONFIGS:
        reference = reference_class(**conf)
        ours = MultiheadTemporalLatentAttention(**conf)
        assert {k: v.shape for k, v in ours.state_dict().items()} == {
            k: v.shape for k, v in reference.state_dict().items()
        }
        ours.load_state_dict(reference.state_dict())  # strict
        reference.load_state_dict(ours.state_dict())


def test_constructor_defaults_match_the_reference():
    import inspect

    reference_class = load_reference_class()
    theirs = inspect.signature(reference_class.__init__).parameters
    mine = inspect.signature(MultiheadTemporalLatentAttention.__init__).parameters
    shared = list(mine)[: len(theirs)]
    assert shared == list(theirs)
    assert {k: mine[k].default for k in shared} == {k: p.default for k, p in theirs.items()}
    # what we add (rope_base) is keyword-only with a default: every reference call still fits
    extra = [mine[k] for k in list(mine)[len(theirs):]]
    assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in extra)


@pytest.mark.parametrize("conf", CONFIGS, ids=lambda c: f"s{c['down_rate']}")
@pytest.mark.parametrize("length", [1, 7, 16, 29])
def test_parallel_outputs_match(conf, length):
    reference, ours = pair(conf, seed=length)
    x, position = inputs(conf, 3, length, seed=length)
    padding = torch.zeros(3, length, dtype=torch.bool)
    padding[1, length - length // 3 :] = True  # right padding in one row
    with torch.no_grad():
        expected = reference(x, x, x, key_padding_mask=padding, position=position)
        got = ours(x, x, x, key_padding_mask=padding, position=position)
    diff = (expected - got).abs()[~padding]
    assert diff.max() < TOLERANCE


@pytest.mark.parametrize("conf", CONFIGS, ids=lambda c: f"s{c['down_rate']}")
@pytest.mark.parametrize("prompt_len", [1, 5, 8])
def test_incremental_prompt_queried_too(conf, prompt_len):
    """recompute_prompt_attn=True: the prompt is queried, then steps."""
    reference, ours = pair(conf, seed=prompt_len, recompute_prompt_attn=True)
    x, position = inputs(conf, 2, 19, seed=prompt_len)
    ref_state, our_state = {}, {}
    with torch.no_grad():
        for start, end in [(0, prompt_len)] + [(t, t + 1) for t in range(prompt_len, 19)]:
            part = x[:, start:end]
            expected = reference(part, part, part, position=position[:, start:end],
                                 incremental_state=ref_state)
            got = ours(part, part, part, position=position[:, start:end],
                       incremental_state=our_state)
            assert (expected - got).abs().max() < TOLERANCE, (start, end)


@pytest.mark.parametrize("conf", CONFIGS, ids=lambda c: f"s{c['down_rate']}")
@pytest.mark.parametrize("prompt_len", [2, 6, 9])
def test_incremental_only_new_positions_queried(conf, prompt_len):
    """recompute_prompt_attn=False: the first call queries only the newest position."""
    reference, ours = pair(conf, seed=prompt_len, recompute_prompt_attn=False)
    x, position = inputs(conf, 2, 17, seed=prompt_len)
    ref_state, our_state = {}, {}
    with torch.no_grad():
        for end in range(prompt_len, 18):
            start = 0 if end == prompt_len else end - 1
            query, key = x[:, end - 1 : end], x[:, start:end]
            expected = reference(query, key, key, position=position[:, start:end],
                                 incremental_state=ref_state)
            got = ours(query, key, key, position=position[:, start:end],
                       incremental_state=our_state)
            assert (expected - got).abs().max() < TOLERANCE, end


def test_beam_reorder_matches_reference():
    conf = CONFIGS[1]
    reference, ours = pair(conf, seed=3, recompute_prompt_attn=True)
    x, position = inputs(conf, 3, 12, seed=3)
    order = torch.tensor([2, 2, 0])
    ref_state, our_state = {}, {}
    with torch.no_grad():
        reference(x[:, :4], x[:, :4], x[:, :4], position=position[:, :4], incremental_state=ref_state)
        ours(x[:, :4], x[:, :4], x[:, :4], position=position[:, :4], incremental_state=our_state)
        reference.reorder_incremental_state(ref_state, order)
        ours.reorder_incremental_state(our_state, order)
        x = x[order]
        for t in range(4, 12):
            part = x[:, t : t + 1]
            expected = reference(part, part, part, position=position[:, t : t + 1],
                                 incremental_state=ref_state)
            got = ours(part, part, part, position=position[:, t : t + 1],
                       incremental_state=our_state)
            assert (expected - got).abs().max() < TOLERANCE
