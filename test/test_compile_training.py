"""decoder_conf ``compile: true`` (or a torch.compile mode): the layers run through
torch.compile where no decoding cache is used (training, validation), with the eager
stack's outputs, gradients and parameter names; decoding stays eager. On the CPU
(inductor's C++ backend) in fp32; ``reduce-overhead`` (CUDA graphs) on the GPU."""

import copy
import pickle

import pytest
import torch

from espnet2_mtla.model.decoder import DecoderOnlyStack

LATENT = dict(kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8)


def stack(attention, attention_conf, compile):
    torch.manual_seed(0)
    return DecoderOnlyStack(50, d_model=32, num_heads=4, num_layers=2, ffn_dim=64,
                            dropout=0.0, attention=attention, attention_conf=attention_conf,
                            prefix_mode="full", compile=compile)


def loss_and_gradients(model, text, prefix, positions, padding):
    model.zero_grad()
    hidden = model(text, positions, padding, prefix=prefix)
    # (padded rows' outputs are not compared: only the real positions' losses count)
    real = ~padding[:, prefix.shape[1]:]
    loss = (hidden.pow(2).sum(-1) * real).sum()
    loss.backward()
    # (the embedding and output layer are not used here: no gradient)
    return hidden[real], {name: p.grad.clone() for name, p in model.named_parameters()
                          if p.grad is not None}


def assert_step_matches(model, eager, inputs):
    """One step of ``model`` gives the eager stack's outputs and gradients (fp32, 1e-4)."""
    want_out, want_grads = loss_and_gradients(eager, *inputs)
    got_out, got_grads = loss_and_gradients(model, *inputs)
    assert set(got_grads) == set(want_grads) and len(want_grads) > 10
    torch.testing.assert_close(got_out, want_out, atol=1e-4, rtol=1e-4)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, atol=1e-4, rtol=1e-4,
                                   msg=lambda m: f"{name}: {m}")


def batch(length, prefix_length=5):
    """Three rows of prefix + text, the second with a padded end (B, P + T)."""
    generator = torch.Generator().manual_seed(length)
    text = torch.randn(3, length, 32, generator=generator)
    prefix = torch.randn(3, prefix_length, 32, generator=generator)
    total = prefix_length + length
    positions = torch.arange(total).expand(3, -1)
    padding = torch.zeros(3, total, dtype=torch.bool)
    padding[1, total - 3:] = True
    return text, prefix, positions, padding


@pytest.mark.parametrize("attention, conf", [
    ("mtla", {**LATENT, "down_rate": 2}),
    pytest.param("mha", {}, marks=pytest.mark.slow),
    pytest.param("mla", LATENT, marks=pytest.mark.slow),
])
def test_compiled_layers_give_the_eager_outputs_and_gradients(attention, conf):
    eager, compiled = stack(attention, conf, False), stack(attention, conf, True)
    for length in (9, 14):  # a second shape: the recompilation with dynamic shapes
        assert_step_matches(compiled, eager, batch(length))
    assert "_compiled_run_layers" in compiled.__dict__  # the compiled path ran
    # the parameters keep the eager names; copies and pickles leave the compiled code out
    assert list(compiled.state_dict()) == list(eager.state_dict())
    duplicate = copy.deepcopy(compiled)
    assert "_compiled_run_layers" not in duplicate.__dict__
    restored = pickle.loads(pickle.dumps(compiled))
    with torch.no_grad():
        text, prefix, positions, padding = batch(9)
        torch.testing.assert_close(restored(text, positions, padding, prefix=prefix),
                                   eager(text, positions, padding, prefix=prefix),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("attention, conf", [("mtla", {**LATENT, "down_rate": 2}),
                                             ("mla", LATENT)])
def test_reduce_overhead_replays_the_eager_outputs_and_gradients_on_cuda(attention, conf):
    """compile: reduce-overhead (CUDA graphs recorded on the first steps of a shape, then
    replayed): every step's outputs and gradients are the eager stack's, fp32."""
    eager = stack(attention, conf, False).cuda()
    graphed = stack(attention, conf, "reduce-overhead").cuda()
    inputs = [tensor.cuda() for tensor in batch(9)]
    for _ in range(4):  # warm-up, recording, replays
        assert_step_matches(graphed, eager, inputs)
    assert "_compiled_run_layers" in graphed.__dict__


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graphed_mtla_layers_take_flex_at_every_length_on_cuda(monkeypatch):
    """Replayed from CUDA graphs, MTLA's training attention is FlexAttention even for
    rows shorter than FLEX_MIN_LENGTH (eager rows that short take the dense mask): outputs
    and gradients of the eager (dense) stack, fp32, at two lengths."""
    from espnet2_mtla.kernels import stride_aware_flex

    monkeypatch.setattr(stride_aware_flex, "_compiled_flex", None)  # set where Flex runs
    conf = {**LATENT, "v_head_dim": 16, "down_rate": 2}  # (Flex's narrowest heads: 16)
    eager = stack("mtla", conf, False).cuda()
    graphed = stack("mtla", conf, "reduce-overhead").cuda()
    for length in (9, 14):
        inputs = [tensor.cuda() for tensor in batch(length)]
        if length == 9:  # eager rows this short take the dense mask
            loss_and_gradients(eager, *inputs)
            assert stride_aware_flex._compiled_flex is None
        for _ in range(3):  # warm-up, recording, replay
            assert_step_matches(graphed, eager, inputs)
    assert stride_aware_flex._compiled_flex is not None  # the graphed layers took Flex


def test_graph_modes_take_flex_at_every_length_and_other_modes_by_length():
    for mode, want in (("reduce-overhead", 0), ("max-autotune", 0), (True, None),
                       ("max-autotune-no-cudagraphs", None), (False, None)):
        model = stack("mtla", {**LATENT, "down_rate": 2}, mode)
        assert [layer.attn.flex_min_length for layer in model.layers] == [want, want], mode
    assert stack("mha", {}, "reduce-overhead").layers[0].attn.__dict__.get(
        "flex_min_length") is None  # (no such choice in MHA)


def test_decoding_with_caches_stays_eager():
    model = stack("mtla", {**LATENT, "down_rate": 2}, True).eval()
    text, prefix, positions, padding = batch(6)
    with torch.no_grad():
        caches = model.make_caches(3, capacity=16, prefix_columns=prefix.shape[1])
        model(text, positions, padding, prefix=prefix, caches=caches)
    assert "_compiled_run_layers" not in model.__dict__


def test_compile_must_be_a_boolean_or_a_mode():
    with pytest.raises(ValueError, match="compile must be true, false or one of .*"
                                         "reduce-overhead.*; got 'yes'"):
        DecoderOnlyStack(10, d_model=16, num_heads=2, num_layers=1, ffn_dim=16, compile="yes")
    for value, mode in ((False, None), (True, "default"), ("reduce-overhead", "reduce-overhead")):
        model = DecoderOnlyStack(10, d_model=16, num_heads=2, num_layers=1, ffn_dim=16,
                                 compile=value)
        assert model.compile_mode == mode


def test_the_task_reads_compile_from_decoder_conf(tmp_path):
    """As a user writes it in a training YAML: decoder_conf: {compile: reduce-overhead}."""
    import yaml

    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask
    from speech_fixtures import token_list

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "encoder": "linear", "encoder_conf": {"output_size": 32, "input_layer": "conv2d"},
        "decoder_conf": {"d_model": 32, "num_heads": 4, "num_layers": 1, "ffn_dim": 32,
                         "compile": "reduce-overhead"},
        "attention": "mtla", "attention_conf": {**LATENT, "down_rate": 2},
        "token_type": "char"}))
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(token_list()) + "\n")
    args = DecoderOnlyTask.get_parser().parse_args(
        ["--config", str(config), "--token_list", str(tokens)])
    model = DecoderOnlyTask.build_model(args)
    assert model.decoder.compile_mode == "reduce-overhead"
