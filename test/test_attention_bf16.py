"""bf16 runs on CPU and stays within 2e-2 relative error of fp32."""

import torch

from conftest import make_attention, padded_batch


def relative_error(approx, exact, padding):
    real = ~padding
    return ((approx.float() - exact)[real].norm() / exact[real].norm()).item()


def test_bf16_parallel_and_incremental_close_to_fp32(attention_name):
    exact_module = make_attention(attention_name, seed=21)
    bf16_module = make_attention(attention_name, seed=21, dtype=torch.bfloat16)
    x, positions, padding = padded_batch([24, 17], 24, "right", seed=21)
    with torch.no_grad():
        exact = exact_module(x, position=positions, key_padding_mask=padding)
        parallel = bf16_module(x.bfloat16(), position=positions, key_padding_mask=padding)
        cache = bf16_module.make_cache(2)
        stepped = torch.cat(
            [
                bf16_module(x[:, t : t + 1].bfloat16(), position=positions[:, t : t + 1],
                            key_padding_mask=padding[:, t : t + 1], cache=cache)
                for t in range(24)
            ],
            dim=1,
        )
    assert parallel.dtype == stepped.dtype == torch.bfloat16
    assert relative_error(parallel, exact, padding) < 2e-2
    assert relative_error(stepped, exact, padding) < 2e-2
