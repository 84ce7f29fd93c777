"""Shared helpers for the tests: tiny attention modules and their inputs."""

import pytest
import torch

from espnet2_mtla.attention import build_attention

EMBED_DIM = 32
NUM_HEADS = 4

# tiny configurations of every type; kv_lora_rank divisible by 4 for MTLA's hyper-network
LATENT_CONF = dict(kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)
TYPE_CONFS = {
    "mha": ("mha", {}),
    "mqa": ("mqa", {}),
    "gqa": ("gqa", {"num_kv_heads": 2}),
    "mla": ("mla", LATENT_CONF),
    **{f"mtla_s{s}": ("mtla", {**LATENT_CONF, "down_rate": s}) for s in range(1, 6)},
    "mtla_s3_qlora": ("mtla", {**LATENT_CONF, "down_rate": 3, "q_lora_rank": 12}),
    "mtla_s3_offset": ("mtla", {**LATENT_CONF, "down_rate": 3, "offset_gain": True}),
}


def make_attention(name: str, seed: int = 0, dtype=torch.float32):
    """A tiny module of configuration ``name`` (see TYPE_CONFS), in eval mode."""
    attention_type, conf = TYPE_CONFS[name]
    torch.manual_seed(seed)
    module = build_attention(attention_type, EMBED_DIM, NUM_HEADS, **conf).eval()
    # non-trivial biases and norms, so a misplaced term cannot hide behind zeros, and
    # merge weights that differ per token (the hyper-network's fc_p starts at zero)
    with torch.no_grad():
        for param_name, param in module.named_parameters():
            if param_name.endswith("bias") or "norm" in param_name:
                param.add_(0.1 * torch.randn_like(param))
            elif param_name == "kv_offset_gain":  # a gain that differs per offset
                param.add_(0.5 * torch.randn_like(param))
            elif param_name == "hypernet_down.fc_p.weight":
                param.copy_(torch.randn_like(param) * param.shape[1] ** -0.5)
    return module.to(dtype)


def padded_batch(lengths, total_len, side, seed=0, dtype=torch.float32):
    """Inputs (B, T, D), positions (B, T) and padding (B, T) for rows of ``lengths``.

    side: "right" or "left". Real tokens of a row carry positions 0..len-1; padded
    slots carry position 0 (any value must do: they are masked).
    """
    generator = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    x = torch.randn(batch, total_len, EMBED_DIM, generator=generator, dtype=dtype)
    positions = torch.zeros(batch, total_len, dtype=torch.long)
    padding = torch.ones(batch, total_len, dtype=torch.bool)
    for row, length in enumerate(lengths):
        start = 0 if side == "right" else total_len - length
        positions[row, start : start + length] = torch.arange(length)
        padding[row, start : start + length] = False
    return x, positions, padding


@pytest.fixture(params=sorted(TYPE_CONFS))
def attention_name(request):
    return request.param


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (skipped by default)")


def pytest_collection_modifyitems(config, items):
    # a test skipped without a GPU must carry the gpu marker, or `pytest -m gpu` (how the
    # GPU runs select them) leaves it out without a word
    unmarked = [item.nodeid for item in items if "gpu" not in item.keywords and any(
        "CUDA" in str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif"))]
    if unmarked:
        raise pytest.UsageError("tests skipped without a CUDA GPU need @pytest.mark.gpu: "
                                + ", ".join(unmarked))
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
