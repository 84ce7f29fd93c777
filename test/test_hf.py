"""Hugging Face Transformers integration: LlamaMTLA models load through the Auto classes
and generate() with the compressed latent cache gives the tokens of full recomputation."""

import math
import re
import warnings

import pytest
import torch
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, DynamicCache, LlamaConfig,
                          LlamaForCausalLM)

import espnet2_mtla.hf as hf

LLAMA = LlamaConfig(vocab_size=61, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, pad_token_id=0,
                    bos_token_id=1, eos_token_id=2)
LATENT = dict(kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)


@pytest.fixture(autouse=True)
def our_auto_classes():
    """The reference oracle (imported by other tests) registers its own classes under
    "llama-mtla"; each test starts with ours registered, as after importing espnet2_mtla.hf."""
    hf.register()


def tiny_model(down_rate, seed=0, **extra):
    config = hf.LlamaMTLAConfig(**LLAMA.to_dict(), **LATENT, down_rate=down_rate, **extra)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # non-trivial norms and merge biases
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
            elif name.endswith("kv_offset_gain"):  # a gain that differs per offset
                param.add_(0.5 * torch.randn_like(param))
    return model


def left_padded_prompts():
    """Three prompts of lengths 7, 4 and 1, left-padded with id 0."""
    rows = [[5, 9, 11, 3, 17, 23, 8], [12, 4, 30, 7], [44]]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def test_config_registers_and_builds_from_a_llama_config():
    config = hf.LlamaMTLAConfig(**LLAMA.to_dict(), down_rate=3)
    assert config.model_type == "llama-mtla" and config.down_rate == 3
    assert config.hidden_size == 64 and config.kv_lora_rank == 256
    assert isinstance(AutoConfig.for_model("llama-mtla"), hf.LlamaMTLAConfig)
    assert isinstance(AutoModel.from_config(config), hf.LlamaMTLAModel)
    with pytest.raises(ValueError, match="down_rate"):
        hf.LlamaMTLAConfig(**LLAMA.to_dict(), down_rate=0)


@pytest.mark.parametrize("down_rate", [1, 2, 3])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generate_with_compressed_cache_equals_full_recomputation(down_rate, num_beams):
    model = tiny_model(down_rate)
    ids, mask = left_padded_prompts()
    common = dict(attention_mask=mask, max_new_tokens=9, do_sample=False, num_beams=num_beams,
                  eos_token_id=None, pad_token_id=0)
    cached = model.generate(ids, **common, return_dict_in_generate=True)
    assert isinstance(cached.past_key_values, hf.MTLACache)  # the default, not switched off
    uncached = model.generate(ids, **common, use_cache=False)
    assert torch.equal(cached.sequences, uncached)
    # each row alone (no padding) generates the same continuation
    for row in range(ids.shape[0]):
        real = ids[row][mask[row].bool()][None]
        alone = model.generate(real, **{**common, "attention_mask": torch.ones_like(real)})
        assert torch.equal(alone[0, real.shape[1]:], uncached[row, ids.shape[1]:])


def test_offset_gain_generates_the_tokens_of_full_recomputation_and_round_trips(tmp_path):
    model = tiny_model(3, offset_gain=True)
    gains = [layer.self_attn.kv_offset_gain for layer in model.model.layers]
    assert all(g.shape == (3, LATENT["kv_lora_rank"]) for g in gains)
    ids, mask = left_padded_prompts()
    common = dict(attention_mask=mask, max_new_tokens=9, do_sample=False, eos_token_id=None,
                  pad_token_id=0)
    cached = model.generate(ids, **common)
    assert torch.equal(cached, model.generate(ids, **common, use_cache=False))
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.offset_gain is True
    assert torch.equal(loaded.generate(ids, **common), cached)
    with pytest.raises(ValueError, match="offset_gain"):
        hf.LlamaMTLAConfig(**LLAMA.to_dict(), down_rate=1, offset_gain=True)


@pytest.mark.parametrize("down_rate", [1, 2, 3, 4])
def test_beams_sharing_the_prompt_give_the_tokens_and_scores_of_copies(down_rate):
    """MTLACache(share_prefix=True) with num_beams 3 (generate()'s default cache then):
    each prompt's entries held once for its beams (left-padded prompts of lengths 7, 4, 1: prefills ending inside and at the
    end of merged chunks); the sequences and scores of the cache that copies them."""
    model = tiny_model(down_rate)
    ids, mask = left_padded_prompts()
    layers = model.config.num_hidden_layers
    common = dict(attention_mask=mask, max_new_tokens=9, min_new_tokens=9, do_sample=False,
                  num_beams=3, num_return_sequences=3, eos_token_id=None, pad_token_id=0,
                  return_dict_in_generate=True, output_scores=True)
    field = hf.modeling.CACHE_FIELD  # (the cache argument's name in this release)
    copied = model.generate(ids, **common, **{field: hf.MTLACache(layers)})
    shared = model.generate(ids, **common, **{field: hf.MTLACache(layers, share_prefix=True)})
    default = model.generate(ids, **common)  # (beam search shares by default)
    assert torch.equal(shared.sequences, copied.sequences)
    assert torch.equal(default.sequences, copied.sequences)
    assert torch.allclose(shared.sequences_scores, copied.sequences_scores, atol=1e-5)
    cache, copies = getattr(shared, field), getattr(copied, field)
    for held in (cache, getattr(default, field)):
        assert all(isinstance(layer.latent, hf.cache.SharedPrefixLatentCache)
                   for layer in held.layers)
    assert not any(isinstance(layer.latent, hf.cache.SharedPrefixLatentCache)
                   for layer in copies.layers)
    assert cache.get_seq_length() == copies.get_seq_length()
    assert cache.nbytes() < copies.nbytes()  # the prompts held once
    with pytest.raises(NotImplementedError, match="share_prefix"):
        cache.crop(-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("down_rate", [1, 2])
def test_beams_sharing_the_prompt_on_the_gpu_give_the_tokens_of_copies(down_rate):
    """On CUDA the shared decode step is the Triton kernel (a group's shared entries read
    once for its beams): fp32, the sequences of the copying cache, scores within 1e-4."""
    from espnet2_mtla.kernels import latent_shared_decode_kernel

    config = hf.LlamaMTLAConfig(**LLAMA.to_dict(), **{**LATENT, "qk_rope_head_dim": 16},
                                down_rate=down_rate)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).cuda().eval()
    rank = LATENT["kv_lora_rank"]  # (the kernel takes these shapes: it is what runs)
    query = torch.zeros(12, LLAMA.num_attention_heads, rank + 16, device="cuda")
    assert latent_shared_decode_kernel(query, rank, 4) is not None
    ids, mask = (tensor.cuda() for tensor in left_padded_prompts())
    layers, field = model.config.num_hidden_layers, hf.modeling.CACHE_FIELD
    common = dict(attention_mask=mask, max_new_tokens=12, min_new_tokens=12, do_sample=False,
                  num_beams=4, num_return_sequences=4, eos_token_id=None, pad_token_id=0,
                  return_dict_in_generate=True, output_scores=True)
    copied = model.generate(ids, **common, **{field: hf.MTLACache(layers)})
    shared = model.generate(ids, **common, **{field: hf.MTLACache(layers, share_prefix=True)})
    assert torch.equal(shared.sequences, copied.sequences)
    assert torch.allclose(shared.sequences_scores, copied.sequences_scores, atol=1e-4)


@pytest.mark.parametrize("down_rate", [1, 2, 3, 4])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_the_static_decode_step_gives_the_tokens_of_the_eager_one(down_rate, num_beams):
    """MTLACache(cuda_graphs=True): generate()'s single-token steps run on the static
    caches that CUDA graphs replay (eagerly here, off CUDA: the same ops), with the room
    for max_length steps preallocated; the eager cache's sequences and scores, left-padded
    prompts, greedy and beam search (the prompt shared by the beams)."""
    model = tiny_model(down_rate)
    ids, mask = left_padded_prompts()
    layers, field = model.config.num_hidden_layers, hf.modeling.CACHE_FIELD
    common = dict(attention_mask=mask, max_new_tokens=9, min_new_tokens=9, do_sample=False,
                  num_beams=num_beams, eos_token_id=None, pad_token_id=0,
                  return_dict_in_generate=True, output_scores=True)
    share = num_beams > 1
    eager = model.generate(ids, **common, **{field: hf.MTLACache(layers, share_prefix=share,
                                                                 cuda_graphs=False)})
    static = model.generate(ids, **common, **{field: hf.MTLACache(layers, share_prefix=share,
                                                                  cuda_graphs=True)})
    cache = getattr(static, field)
    assert cache.max_tokens == ids.shape[1] + 9  # generate()'s max_length
    assert cache.graphed_step is not None
    assert all(layer.latent.static for layer in cache.layers)
    assert not any(layer.latent.static for layer in getattr(eager, field).layers)
    assert torch.equal(static.sequences, eager.sequences)
    for got, want in zip(static.scores, eager.scores):
        assert torch.allclose(got, want, atol=1e-5)
    full = model.generate(ids, **{**common, "return_dict_in_generate": False,
                                  "output_scores": False}, use_cache=False)
    assert torch.equal(static.sequences, full)


@pytest.mark.parametrize("down_rate", [1, 3])
def test_an_eager_forward_leaves_the_static_step_and_continues_exactly(down_rate):
    """After static steps, a forward of several tokens (or with gradients) runs eagerly on
    the same entries, out of static mode, and gives the logits of one full forward; the
    next single step is static again."""
    model = tiny_model(down_rate)
    ids = torch.tensor([[5, 9, 11, 3, 17, 23, 8, 30, 4, 12, 40, 7]])
    with torch.no_grad():
        full = model(ids).logits
        cache = hf.MTLACache(model.config.num_hidden_layers, max_tokens=20, cuda_graphs=True)
        steps = [model(ids[:, :4], past_key_values=cache).logits]
        for t in range(4, 7):  # static single steps
            steps.append(model(ids[:, t:t + 1], past_key_values=cache).logits)
        assert cache.graphed_step is not None and cache.layers[0].latent.static
        steps.append(model(ids[:, 7:10], past_key_values=cache).logits)  # several: eager
        assert cache.graphed_step is None and not cache.layers[0].latent.static
        steps.append(model(ids[:, 10:11], past_key_values=cache).logits)
        assert cache.graphed_step is not None  # static again
    with torch.enable_grad():  # with gradients: eager
        steps.append(model(ids[:, 11:12], past_key_values=cache).logits.detach())
    assert cache.graphed_step is None
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_a_static_cache_continued_by_a_second_generate_gives_the_eager_tokens():
    """A conversation's second turn: generate() again on the same cache (now longer than
    the first turn's max_length): static mode left for the new prompt tokens, the room
    grown, the steps static again; the tokens of an eager cache taken through both turns."""
    model = tiny_model(3)
    layers, field = model.config.num_hidden_layers, hf.modeling.CACHE_FIELD
    first = torch.tensor([[5, 9, 11, 3, 17]])
    common = dict(max_new_tokens=7, min_new_tokens=7, do_sample=False, eos_token_id=None,
                  pad_token_id=0)
    results = []
    for graphs in (False, True):
        cache = hf.MTLACache(layers, cuda_graphs=graphs)
        turn = model.generate(first, **common, **{field: cache})
        turn = torch.cat([turn, torch.tensor([[23, 8, 30, 4]])], dim=1)  # the user's reply
        results.append(model.generate(turn, **common, **{field: cache}))
        assert cache.max_tokens == turn.shape[1] + 7
        assert (cache.graphed_step is not None) == graphs
    assert torch.equal(results[0], results[1])
    assert torch.equal(results[1], model.generate(results[1][:, :-7], **common, use_cache=False))


def test_assisted_decoding_on_a_static_cache_crops_out_of_static_mode():
    """The main model's cache in static mode: the first rejected draft leaves static mode
    for good (a crop every round); the tokens of full recomputation."""
    model = tiny_model(2)
    ids = torch.tensor([[5, 9, 11, 5, 9, 11, 5, 9, 11, 7, 13, 5, 9]])
    common = dict(max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
    cache = hf.MTLACache(model.config.num_hidden_layers, cuda_graphs=True)
    drafted = model.generate(ids, **common, assistant_model=tiny_model(2, seed=1),
                             **{hf.modeling.CACHE_FIELD: cache})
    assert torch.equal(drafted, model.generate(ids, use_cache=False, **common))
    assert cache.cuda_graphs is False and cache.graphed_step is None


def test_a_cache_without_max_tokens_never_enters_static_mode():
    """No known room for the steps to come (a cache made by hand): eager steps, as before."""
    model = tiny_model(2)
    cache = hf.MTLACache(model.config.num_hidden_layers, cuda_graphs=True)
    with torch.no_grad():
        model(torch.tensor([[5, 9, 11]]), past_key_values=cache)
        model(torch.tensor([[3]]), past_key_values=cache)
    assert cache.graphed_step is None and not cache.layers[0].latent.static


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("down_rate", [1, 2, 4])
@pytest.mark.parametrize("num_beams", [1, 4])
def test_generate_replays_its_decode_steps_from_cuda_graphs(down_rate, num_beams):
    """On CUDA, generate()'s default cache replays its decode steps from a captured graph
    (the fused merge and the Triton decode kernel): fp32, left-padded prompts, the
    sequences of the eager cache, scores within 1e-4, and of full recomputation (greedy)."""
    config = hf.LlamaMTLAConfig(**LLAMA.to_dict(), **{**LATENT, "qk_rope_head_dim": 16},
                                down_rate=down_rate)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).cuda().eval()
    ids, mask = (tensor.cuda() for tensor in left_padded_prompts())
    layers, field = model.config.num_hidden_layers, hf.modeling.CACHE_FIELD
    common = dict(attention_mask=mask, max_new_tokens=12, min_new_tokens=12, do_sample=False,
                  num_beams=num_beams, num_return_sequences=num_beams, eos_token_id=None,
                  pad_token_id=0, return_dict_in_generate=True, output_scores=True)
    graphed = model.generate(ids, **common)
    cache = getattr(graphed, field)
    assert cache.graphed_step is not None and cache.graphed_step.replays >= 10
    eager = model.generate(ids, **common, **{field: hf.MTLACache(
        layers, share_prefix=num_beams > 1, cuda_graphs=False)})
    assert torch.equal(graphed.sequences, eager.sequences)
    for got, want in zip(graphed.scores, eager.scores):
        assert torch.allclose(got, want, atol=1e-4)
    if num_beams == 1:
        full = model.generate(ids, **{**common, "return_dict_in_generate": False,
                                      "output_scores": False}, use_cache=False)
        assert torch.equal(graphed.sequences, full)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("down_rate", [1, 2, 4])
def test_chunked_prefill_on_the_gpu_gives_the_tokens_of_one_prefill(down_rate):
    """On CUDA a prompt fed in chunks continues the cache through the GPU's kernels
    (unpadded: for MLA the causal flash kernel aligned to the bottom right, for s > 1
    the mask-free strided prefill where a chunk starts a merged chunk): fp32, the
    sequences and scores of one prefill, with and without left padding."""
    config = hf.LlamaMTLAConfig(**LLAMA.to_dict(), **{**LATENT, "qk_rope_head_dim": 16},
                                down_rate=down_rate)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).cuda().eval()
    ids = torch.randint(3, LLAMA.vocab_size, (3, 29), device="cuda",
                        generator=torch.Generator("cuda").manual_seed(0))
    common = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, eos_token_id=None,
                  pad_token_id=0, return_dict_in_generate=True, output_scores=True)
    for mask in (torch.ones_like(ids), (torch.arange(29, device="cuda") >= torch.tensor(
            [[0], [5], [11]], device="cuda")).long()):
        whole = model.generate(ids, attention_mask=mask, **common)
        for chunk in (7, 8):  # (8: every chunk starts a merged chunk)
            chunked = model.generate(ids, attention_mask=mask, prefill_chunk_size=chunk,
                                     **common)
            assert torch.equal(chunked.sequences, whole.sequences)
            for got, want in zip(chunked.scores, whole.scores):
                assert torch.allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("down_rate", [1, 2, 3, 4])
def test_chunked_prefill_gives_the_tokens_of_one_prefill(down_rate):
    """Transformers' prefill_chunk_size feeds a long prompt in chunks (activations of one
    chunk, not the prompt); chunks of 2 and 3 tokens end inside merged chunks of every
    s and inside the left padding: the same tokens and scores as one prefill."""
    model = tiny_model(down_rate)
    ids, mask = left_padded_prompts()
    common = dict(attention_mask=mask, max_new_tokens=9, do_sample=False, eos_token_id=None,
                  pad_token_id=0, return_dict_in_generate=True, output_scores=True)
    whole = model.generate(ids, **common)
    for chunk in (2, 3):
        chunked = model.generate(ids, **common, prefill_chunk_size=chunk)
        assert torch.equal(chunked.sequences, whole.sequences)
        for got, want in zip(chunked.scores, whole.scores):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("down_rate", [1, 2, 4])
def test_logits_of_one_forward_equal_step_by_step_through_the_cache(down_rate):
    model = tiny_model(down_rate, seed=1)
    ids, mask = left_padded_prompts()
    with torch.no_grad():
        full = model(ids, attention_mask=mask, use_cache=False).logits
        cache = hf.MTLACache(LLAMA.num_hidden_layers)
        steps = [model(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], past_key_values=cache,
                       use_cache=True).logits for t in range(ids.shape[1])]
    stepped = torch.cat(steps, dim=1)
    real = mask.bool()
    torch.testing.assert_close(stepped[real], full[real], rtol=0, atol=1e-4)


def test_save_and_load_round_trip_gives_identical_logits(tmp_path):
    model = tiny_model(2, seed=2)
    ids, mask = left_padded_prompts()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, hf.LlamaMTLAForCausalLM) and loaded.config.down_rate == 2
    with torch.no_grad():
        assert torch.equal(model(ids, attention_mask=mask).logits,
                           loaded(ids, attention_mask=mask).logits)


def test_register_restores_our_classes_after_the_reference_registers_its_own():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = pytest.importorskip("mtla.mtla_hf.configuration_mtla")
    AutoConfig.register("llama-mtla", reference.LlamaMTLAConfig, exist_ok=True)  # as its import does
    assert AutoConfig.for_model("llama-mtla").__class__ is reference.LlamaMTLAConfig
    hf.register()
    assert AutoConfig.for_model("llama-mtla").__class__ is hf.LlamaMTLAConfig


def test_reference_package_state_dict_loads():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = pytest.importorskip("mtla.mtla_hf.modeling_mtla")
        from mtla.mtla_hf.configuration_mtla import LlamaMTLAConfig as ReferenceConfig
    config = ReferenceConfig(**LLAMA.to_dict(), **LATENT, down_rate=2)
    torch.manual_seed(3)
    theirs = reference.LlamaMTLAForCausalLM(config).state_dict()
    ours = tiny_model(2)
    missing, unexpected = ours.load_state_dict(theirs, strict=True)
    assert not missing and not unexpected
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name


@pytest.mark.parametrize("down_rate", [1, 2, 3])
def test_cache_bytes_follow_the_formula(down_rate):
    model = tiny_model(down_rate)
    batch, prompt_len, new, beams = 2, 5, 8, 2
    ids = torch.randint(3, 60, (batch, prompt_len))
    common = dict(attention_mask=torch.ones_like(ids), max_new_tokens=new,
                  min_new_tokens=new, num_beams=beams, do_sample=False, eos_token_id=None,
                  pad_token_id=0, return_dict_in_generate=True)
    layers, field = LLAMA.num_hidden_layers, hf.modeling.CACHE_FIELD
    copied = model.generate(ids, **common, **{field: hf.MTLACache(layers)})
    shared = model.generate(ids, **common)  # (the default: the beams share each prompt)
    steps = prompt_len + new - 1  # the last token is never fed back
    entry_bytes = (LATENT["kv_lora_rank"] + LATENT["qk_rope_head_dim"]) * layers * 4
    entries = math.ceil(steps / down_rate)  # per row
    assert getattr(copied, field).nbytes() == entries * batch * beams * entry_bytes
    # shared: the prompt's whole chunks once per prompt, the rest (from the chunk the
    # prompt ends in) per beam
    prompt_chunks = prompt_len // down_rate
    expected = (prompt_chunks * batch + (entries - prompt_chunks) * batch * beams) * entry_bytes
    assert getattr(shared, field).nbytes() == expected
    for out in (copied, shared):
        assert getattr(out, field).get_seq_length() == steps


def test_a_key_value_cache_is_refused_with_a_clear_error():
    model = tiny_model(2)
    ids, mask = left_padded_prompts()
    with pytest.raises(TypeError, match="MTLACache"):
        model(ids, attention_mask=mask, past_key_values=DynamicCache())
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, attention_mask=mask[:, :3])


@pytest.mark.parametrize("version, accepted", [("5.23.0", True), ("5.23.4", True),
                                               ("5.24.0", True), ("5.25.0", False),
                                               ("5.22.1", False), ("6.0.0", False)])
def test_transformers_outside_the_supported_range_is_refused(version, accepted):
    from espnet2_mtla.hf.versions import check_transformers_version

    if accepted:
        check_transformers_version(version)
    else:
        with pytest.raises(ImportError, match=rf"supports transformers >=5\.23\.0,<5\.25\.0, "
                                              rf"but transformers {re.escape(version)} is"):
            check_transformers_version(version)


def test_importing_the_hf_classes_with_an_unsupported_release_fails_clearly():
    """The import itself refuses (a fresh interpreter whose transformers reports 5.25.0)."""
    import subprocess
    import sys

    code = ("import transformers; transformers.__version__ = '5.25.0'\n"
            "import espnet2_mtla.hf")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "ImportError" in done.stderr and "transformers 5.25.0 is installed" in done.stderr


def test_a_checkpoint_that_does_not_fit_is_refused_unless_not_strict(tmp_path):
    """from_pretrained is strict: a one-layer checkpoint loaded with a two-layer config
    would leave layer 1 random, which is an error naming the checkpoint and the weights;
    a causal LM's checkpoint still loads into the base model (its head is ignored)."""
    small = hf.LlamaMTLAConfig(**{**LLAMA.to_dict(), "num_hidden_layers": 1}, **LATENT,
                               down_rate=2)
    AutoModelForCausalLM.from_config(small).save_pretrained(tmp_path / "one_layer")
    config = tiny_model(2).config
    with pytest.raises(ValueError, match=r"one_layer does not fit LlamaMTLAForCausalLM.*"
                                         r"weights missing \(model\.layers\.1\."):
        AutoModelForCausalLM.from_pretrained(tmp_path / "one_layer", config=config)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "one_layer", config=config,
                                                 strict=False)
    assert isinstance(model, hf.LlamaMTLAForCausalLM)
    base = tiny_model(2)
    base.save_pretrained(tmp_path / "lm")
    hf.LlamaMTLAModel.from_pretrained(tmp_path / "lm")  # the head's weights are ignored


# --- Transformers' conventions, as LlamaForCausalLM keeps them ---------------------
def test_hidden_states_follow_llama_and_reach_generate():
    model = tiny_model(2)
    llama = LlamaForCausalLM(LLAMA).eval()
    ids, mask = left_padded_prompts()
    ours = model(ids, attention_mask=mask, output_hidden_states=True)
    theirs = llama(ids, attention_mask=mask, output_hidden_states=True)
    assert len(ours.hidden_states) == len(theirs.hidden_states) == LLAMA.num_hidden_layers + 1
    assert torch.equal(ours.hidden_states[0], model.model.embed_tokens(ids))
    assert torch.equal(ours.hidden_states[-1],
                       model.model(ids, attention_mask=mask).last_hidden_state)
    assert model(ids, attention_mask=mask).hidden_states is None
    out = model.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False,
                         return_dict_in_generate=True, output_hidden_states=True,
                         output_scores=True)
    assert len(out.hidden_states) == 3 and len(out.scores) == 3
    assert all(len(step) == LLAMA.num_hidden_layers + 1 for step in out.hidden_states)


def test_return_dict_false_gives_tuples_from_the_call_and_the_config():
    model = tiny_model(3)
    ids, mask = left_padded_prompts()
    full = model(ids, attention_mask=mask, use_cache=False)
    as_tuple = model(ids, attention_mask=mask, use_cache=False, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], full.logits)
    model.config.return_dict = False
    assert isinstance(model.model(ids, attention_mask=mask, use_cache=False), tuple)


def test_rope_theta_is_used_and_decoding_stays_exact():
    base = tiny_model(2)
    config = hf.LlamaMTLAConfig(**{**LLAMA.to_dict(), "rope_parameters": {
        "rope_type": "default", "rope_theta": 5e5}}, **LATENT, down_rate=2)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.load_state_dict(base.state_dict())
    assert all(layer.self_attn.rope_base == 5e5 for layer in model.model.layers)
    ids, mask = left_padded_prompts()
    assert not torch.allclose(model(ids, attention_mask=mask).logits,
                              base(ids, attention_mask=mask).logits)
    cached = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    full = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                          use_cache=False)
    assert torch.equal(cached, full)


ROPE_SCALING = {
    "linear": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4,
             "original_max_position_embeddings": 8},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 5e5, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
}


@pytest.mark.parametrize("rope_type", sorted(ROPE_SCALING))
def test_rope_scaling_types_rotate_as_llama_does(rope_type):
    """The decoupled rope key/query turn by the angles (and YaRN's attention factor) that
    LlamaRotaryEmbedding computes for a Llama whose head is the rope width; the model's
    outputs change, and cached decoding stays equal to full recomputation."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from espnet2_mtla.attention.rotary import rotary_angles

    parameters = ROPE_SCALING[rope_type]
    config = hf.LlamaMTLAConfig(**{**LLAMA.to_dict(), "rope_parameters": parameters},
                                **LATENT, down_rate=2)
    width = config.qk_rope_head_dim
    llama = LlamaConfig(**{**LLAMA.to_dict(), "rope_parameters": parameters,
                           "head_dim": width})
    positions = torch.arange(40)[None]
    cos, sin = LlamaRotaryEmbedding(llama)(torch.zeros(1, 40, width), positions)
    model = AutoModelForCausalLM.from_config(config).eval()
    attention = model.model.layers[0].self_attn
    ours = rotary_angles(positions, width, attention.rope_base, attention.rope_frequencies,
                         attention.rope_scale)  # (1, 40, width/2, 2)
    # Llama's layout repeats the half-width angles: the first half is each pair's
    torch.testing.assert_close(ours[..., 0], cos[..., :width // 2], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours[..., 1], sin[..., :width // 2], atol=1e-6, rtol=1e-5)

    model.load_state_dict(tiny_model(2).state_dict())
    ids, mask = left_padded_prompts()
    assert not torch.allclose(model(ids, attention_mask=mask).logits,
                              tiny_model(2)(ids, attention_mask=mask).logits)
    cached = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    full = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                          use_cache=False)
    assert torch.equal(cached, full)


@pytest.mark.parametrize("rope_type", ["dynamic", "longrope"])
def test_length_dependent_rope_types_are_refused_not_ignored(rope_type):
    parameters = {"rope_type": rope_type, "factor": 2.0, "rope_theta": 1e4}
    if rope_type == "longrope":
        parameters.update(short_factor=[1.0] * 2, long_factor=[2.0] * 2,
                          original_max_position_embeddings=8)
    with pytest.raises(ValueError, match=f"'{rope_type}' is not supported"):
        hf.LlamaMTLAConfig(**{**LLAMA.to_dict(), "rope_parameters": parameters}, **LATENT)


@pytest.mark.parametrize("down_rate", [1, 2, 3])
def test_output_attentions_of_cached_generate_equal_full_recomputation(down_rate):
    """Each step's probabilities (B, H, 1, T) from the compressed cache are the last
    query row of full recomputation's (B, H, T, T); rows sum to one over real steps, and
    with s > 1 only steps that end a chunk, and the query's own, carry weight."""
    model = tiny_model(down_rate)
    ids, mask = left_padded_prompts()
    common = dict(attention_mask=mask, max_new_tokens=5, do_sample=False, eos_token_id=None,
                  pad_token_id=0, return_dict_in_generate=True, output_attentions=True)
    cached = model.generate(ids, **common)
    full = model.generate(ids, use_cache=False, **common)
    assert torch.equal(cached.sequences, full.sequences)
    assert len(cached.attentions) == 5 and len(cached.attentions[0]) == LLAMA.num_hidden_layers
    for step_cached, step_full in zip(cached.attentions, full.attentions):
        for layer_cached, layer_full in zip(step_cached, step_full):
            rows = layer_cached.shape[2]  # the prompt at the first step, then one token
            torch.testing.assert_close(layer_cached, layer_full[:, :, -rows:],
                                       atol=1e-5, rtol=1e-5)
    last = full.attentions[-1][0]  # (B, H, T, T) of the first layer, final step
    total = last.shape[-1]
    real = torch.cat([mask, torch.ones(3, total - mask.shape[1], dtype=mask.dtype)], 1).bool()
    row = last[:, :, -1]  # the newest query of each row
    torch.testing.assert_close(row.sum(-1), torch.ones_like(row.sum(-1)))
    assert (row.masked_select(~real[:, None, :].expand_as(row)) == 0).all()
    position = real.long().cumsum(-1) - 1
    own = torch.arange(total) == total - 1
    may_attend = real & (((position + 1) % down_rate == 0) | own)
    assert (row.masked_select(~may_attend[:, None, :].expand_as(row)) == 0).all()
    assert (row.masked_select(may_attend[:, None, :].expand_as(row)) > 0).all()


def test_output_attentions_from_the_config_and_in_tuples():
    model = tiny_model(2)
    model.config.output_attentions = True
    ids, mask = left_padded_prompts()
    outputs = model(ids, attention_mask=mask)
    assert len(outputs.attentions) == LLAMA.num_hidden_layers
    assert outputs.attentions[0].shape == (3, LLAMA.num_attention_heads, 7, 7)
    as_tuple = model(ids, attention_mask=mask, return_dict=False)
    torch.testing.assert_close(as_tuple[-1][0], outputs.attentions[0])


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(3).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert all(layer.gradient_checkpointing for layer in model.model.layers)
        ids, mask = left_padded_prompts()
        model(ids, attention_mask=mask, labels=ids, use_cache=False).loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for plain, checkpointed in zip(*grads):
        torch.testing.assert_close(plain, checkpointed)


def test_the_inference_mlp_gives_llamas_numbers_with_and_without_gradients():
    """LlamaMTLAMLP multiplies in place without gradients: the same numbers as Llama's
    MLP (bitwise), and with gradients it is Llama's (the product must stay for backward)."""
    from transformers.models.llama.modeling_llama import LlamaMLP

    config = hf.LlamaMTLAConfig(**LLAMA.to_dict(), **LATENT, down_rate=2)
    torch.manual_seed(0)
    ours = hf.modeling.LlamaMTLAMLP(config)
    llama = LlamaMLP(config)
    llama.load_state_dict(ours.state_dict())
    assert sorted(ours.state_dict()) == sorted(llama.state_dict())
    x = torch.randn(3, 5, config.hidden_size, requires_grad=True)
    with torch.no_grad():
        assert torch.equal(ours(x), llama(x))
    out = ours(x)
    out.sum().backward()
    assert torch.equal(out, llama(x)) and x.grad is not None and x.grad.abs().sum() > 0


def test_tensor_parallel_plan_names_only_modules_that_exist():
    model = tiny_model(2)
    names = {name for name, _ in model.model.named_modules()}
    for pattern in (model.config.base_model_tp_plan or {}):
        regex = re.compile("^" + re.escape(pattern).replace(r"\*", r"\d+") + "$")
        assert any(regex.match(name) for name in names), pattern


@pytest.mark.parametrize("down_rate", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", ["prompt_lookup", "assisted"])
def test_assisted_and_prompt_lookup_decoding_equal_full_recomputation(down_rate, mode, monkeypatch):
    """Rejected drafts are cropped from the compressed cache; a crop inside a merged chunk
    re-feeds that chunk's kept tokens (counted below, so the test sees that path)."""
    refed = []
    crop = hf.MTLACache.crop

    def counting_crop(cache, tokens_to_remove):
        crop(cache, tokens_to_remove)
        refed.append(0 if cache.refeed is None else cache.refeed.shape[1])

    monkeypatch.setattr(hf.MTLACache, "crop", counting_crop)
    model = tiny_model(down_rate)
    ids = torch.tensor([[5, 9, 11, 5, 9, 11, 5, 9, 11, 7, 13, 5, 9]])
    extra = ({"prompt_lookup_num_tokens": 3} if mode == "prompt_lookup"
             else {"assistant_model": tiny_model(down_rate, seed=1)})
    common = dict(max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
    full = model.generate(ids, use_cache=False, **common)
    drafted = model.generate(ids, **common, **extra)
    assert torch.equal(drafted, full)
    assert refed, "no draft was cropped: the test did not exercise crop"
    if down_rate > 1:
        assert max(refed) > 0  # a crop fell inside a chunk


def test_crop_inside_a_chunk_recomputes_it_exactly():
    model = tiny_model(3)
    ids = torch.tensor([[5, 9, 11, 3, 17, 23, 8, 30, 4, 12]])
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
        cache.crop(-4)  # 6 tokens stay: chunks {0,1,2} {3,4,5}
        assert cache.get_seq_length() == 6 and cache.refeed is None
        cache.crop(-2)  # 4 stay: chunk {3} is cut, token 3 is re-fed
        assert cache.get_seq_length() == 4 and cache.refeed.tolist() == [[3]]
        resumed = model(ids[:, 4:], past_key_values=cache, use_cache=True).logits
        fresh = model(ids, use_cache=False).logits[:, 4:]
        torch.testing.assert_close(resumed, fresh, atol=1e-5, rtol=1e-5)
        assert cache.get_seq_length() == 10
    embedded = model(inputs_embeds=model.model.embed_tokens(ids), use_cache=True).past_key_values
    with pytest.raises(NotImplementedError, match="inputs_embeds"):
        embedded.crop(-2)


def test_crop_refuses_rows_cut_at_different_chunk_offsets():
    model = tiny_model(2)
    ids, mask = left_padded_prompts()  # real lengths 7, 4, 1
    cache = model(ids, attention_mask=mask, use_cache=True).past_key_values
    with pytest.raises(ValueError, match="different offsets"):
        cache.crop(-1)


@pytest.mark.parametrize("down_rate", [1, 2])
def test_the_forward_exports_with_torch_export(down_rate):
    """torch.export of the uncached forward; the program gives eager's logits on other
    inputs of the same shape (other ids, other padding)."""
    model = tiny_model(down_rate)
    ids, mask = left_padded_prompts()
    program = torch.export.export(model, (), {"input_ids": ids, "attention_mask": mask,
                                              "use_cache": False})
    other_ids = torch.randint(3, 61, ids.shape)
    for other_mask in (mask.flip(0), torch.ones_like(mask)):
        exported = program.module()(input_ids=other_ids, attention_mask=other_mask,
                                    use_cache=False)
        eager = model(other_ids, attention_mask=other_mask, use_cache=False)
        torch.testing.assert_close(exported.logits, eager.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("down_rate", [1, 3])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_sampling_and_beam_sampling_equal_full_recomputation(down_rate, num_beams):
    """Same seed, same draws: the cached run samples the tokens of the uncached one, and
    its scores (the processed logits) match."""
    model = tiny_model(down_rate)
    ids, mask = left_padded_prompts()
    common = dict(attention_mask=mask, max_new_tokens=7, do_sample=True, top_k=20,
                  temperature=0.8, num_beams=num_beams, eos_token_id=None, pad_token_id=0,
                  return_dict_in_generate=True, output_scores=True)
    torch.manual_seed(123)
    cached = model.generate(ids, **common)
    torch.manual_seed(123)
    full = model.generate(ids, **common, use_cache=False)
    assert torch.equal(cached.sequences, full.sequences)
    for step_cached, step_full in zip(cached.scores, full.scores):
        torch.testing.assert_close(step_cached, step_full, atol=1e-4, rtol=1e-4)
