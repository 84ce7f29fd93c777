"""Bad arguments raise ValueError naming the argument."""

import pytest
import torch

from espnet2_mtla import MultiheadTemporalLatentAttention
from espnet2_mtla.attention import build_attention

from conftest import EMBED_DIM, make_attention


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: build_attention("mha", 30, 4), "embed_dim"),
        (lambda: build_attention("gqa", 32, 8, num_kv_heads=3), "num_kv_heads"),
        (lambda: build_attention("mtla", 32, 4, down_rate=0), "down_rate"),
        (lambda: build_attention("mtla", 32, 4, down_rate=-2), "down_rate"),
        (lambda: build_attention("mtla", 32, 4, down_rate=1.5), "down_rate"),
        (lambda: build_attention("mtla", 32, 4, kv_lora_rank=30), "kv_lora_rank"),
        (lambda: build_attention("mtla", 32, 4, qk_rope_head_dim=5), "qk_rope_head_dim"),
        (lambda: MultiheadTemporalLatentAttention(32, 0), "num_heads"),
        (lambda: build_attention("transformer", 32, 4), "transformer"),
        (lambda: build_attention("mtla", 32, 4, downrate=2), "downrate"),
        (lambda: build_attention("gqa", 32, 4), "num_kv_heads"),
    ],
)
def test_bad_construction(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


@pytest.mark.parametrize("name", ["mha", "gqa", "mla", "mtla_s3"])
def test_bad_calls(name):
    module = make_attention(name)
    x = torch.randn(2, 6, EMBED_DIM)
    with pytest.raises(ValueError, match="query"):
        module(x[0])  # rank 2
    with pytest.raises(ValueError, match="embed_dim"):
        module(torch.randn(2, 6, EMBED_DIM + 1))
    with pytest.raises(ValueError, match="position"):
        module(x, position=torch.arange(5).view(1, -1))
    with pytest.raises(ValueError, match="position"):
        module(x, position=torch.arange(6))  # rank 1
    with pytest.raises(ValueError, match="position"):
        module(x, position=torch.arange(6).float().view(1, -1) + 0.5)
    with pytest.raises(ValueError, match="dtype"):
        module(x.double())  # module is float32
    with pytest.raises(ValueError, match="dtype"):
        module(x, x.bfloat16())
    with pytest.raises(ValueError, match="key_padding_mask"):
        module(x, key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="query length"):
        module(x, x[:, :3])
    with pytest.raises(ValueError, match="value"):
        module(x, x, x[:, :3])
    with pytest.raises(ValueError, match="batch"):
        module(x, cache=module.make_cache(3))


def test_gaps_in_positions_are_rejected_by_mtla():
    module = make_attention("mtla_s2")
    x = torch.randn(1, 4, EMBED_DIM)
    with pytest.raises(ValueError, match="consecutive"):
        module(x, position=torch.tensor([[0, 1, 2, 30]]))
