"""GPU check of the Hugging Face integration: generate() with the compressed cache (Triton
decode kernel and fused cache update on CUDA) gives the tokens of full recomputation, for
left-padded batches, greedy and beam, fp32 and bf16 cache/weights; prints cache bytes.

    python bench/hf_generate_gpu_check.py
"""

import math

import torch
from transformers import LlamaConfig

import espnet2_mtla.hf as hf


def main():
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    llama = LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=512,
                        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2)
    rows = [list(range(5, 5 + n)) for n in (37, 20, 3, 64)]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows], device="cuda")
    mask = (torch.arange(width, device="cuda")[None] >= width - torch.tensor(
        [len(r) for r in rows], device="cuda")[:, None]).long()
    for down_rate in (1, 2, 3):
        for dtype in (torch.float32, torch.bfloat16):
            config = hf.LlamaMTLAConfig(**llama.to_dict(), kv_lora_rank=64, qk_nope_head_dim=32,
                                        qk_rope_head_dim=16, v_head_dim=32, down_rate=down_rate)
            torch.manual_seed(0)
            model = hf.LlamaMTLAForCausalLM(config).cuda().to(dtype).eval()
            for beams in (1, 4):
                common = dict(attention_mask=mask, max_new_tokens=40, min_new_tokens=40,
                              do_sample=False, num_beams=beams, eos_token_id=None, pad_token_id=0)
                with torch.no_grad():
                    cached = model.generate(ids, **common, return_dict_in_generate=True)
                    full = model.generate(ids, **common, use_cache=False)
                same = torch.equal(cached.sequences, full)
                agree = (cached.sequences == full).float().mean().item()
                steps = width + 40 - 1
                bound = (math.ceil(steps / down_rate) + 1) * 80 * 3 * len(rows) * beams * \
                    torch.finfo(dtype).bits // 8
                print(f"s={down_rate} {str(dtype):15s} beams={beams}: tokens equal to full "
                      f"recomputation: {same} (agreement {agree:.3f}); cache "
                      f"{cached.past_key_values.nbytes()} B (bound {bound} B)")


if __name__ == "__main__":
    main()
