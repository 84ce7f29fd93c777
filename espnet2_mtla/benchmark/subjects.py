"""What the benchmark measures: attention layers with caches filled directly (a prefill
of 64k tokens is not what is measured), their snapshots for timed repeats, and the
random-weight decoder-only model with a beam search of fixed output length, and the
decoder stack's training step on random tokens."""

import math
import random

import torch
import torch.nn.functional as F
from torch import nn

from espnet2_mtla.attention import build_attention
from espnet2_mtla.attention.cache import KVCache, LatentCache
from espnet2_mtla.benchmark.baselines import PaperStyleCache, PaperStyleMHA, ReferenceMTLA
from espnet2_mtla.inference.beam_search import BatchBeamSearch
from espnet2_mtla.model.decoder import DecoderOnlyStack
from espnet2_mtla.model.prefix_lm import EncodedPrefix, PrefixLM, left_aligned


def filled_cache(module, batch, length, device, dtype, extra=64):
    """A cache holding ``length`` random tokens, with room for ``extra`` more."""
    cache = module.make_cache(batch, device, dtype, capacity=length + extra)
    if isinstance(cache, KVCache):
        cache.keys[:, :length].normal_()
        cache.values[:, :length].normal_()
    else:
        entries = math.ceil(length / module.down_rate)
        cache.entries[:, :entries].normal_()
        cache.num_entries.fill_(entries)
        cache.first_chunk.fill_(0)
    cache.num_tokens = length
    cache.next_position.fill_(length)
    return cache


class BenchModel(nn.Module, PrefixLM):
    """Random-weight decoder-only model: 12-layer encoder prefix + 9-layer decoder."""

    prefix_input_name = "speech"

    def __init__(self, attention, attention_conf, size, vocab_size):
        super().__init__()
        d_model = size["d_model"]
        self.front = nn.Linear(80, d_model)
        layer = nn.TransformerEncoderLayer(d_model, size["heads"], size["ffn"], dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, size["encoder_layers"])
        baseline = attention in ("mha_paper", "reference_mtla")  # built as mha, then swapped
        self.decoder = DecoderOnlyStack(
            vocab_size, d_model, size["heads"], size["decoder_layers"], size["ffn"], 0.0,
            "mha" if baseline else attention, {} if baseline else attention_conf,
        )
        if attention == "mha_paper":
            for layer in self.decoder.layers:
                layer.attn = PaperStyleMHA(layer.attn)
        elif attention == "reference_mtla":
            for layer in self.decoder.layers:
                layer.attn = ReferenceMTLA(d_model, size["heads"], **attention_conf)
        self.eos = vocab_size - 1
        self.ignore_id = -1
        self.task_token_id = vocab_size - 1

    def encode_prefix(self, batch):
        feats, lengths = batch["speech"], batch["speech_lengths"]
        encoded = self.encoder(self.front(feats))
        # no CTC head: no encoder output for it
        return EncodedPrefix(*left_aligned(encoded, lengths), lengths)


class FixedLengthBeamSearch(BatchBeamSearch):
    """Beam search producing exactly ``output_len`` tokens (random weights never stop).

    With ``eos_seed``, EOS-terminated instead: utterance u ends at a length drawn with
    that seed from output_len / 4 .. output_len (EOS forced there), so the batch shrinks
    as utterances finish, as in real decoding (finished hypotheses, graph recapture)."""

    def __init__(self, model, beam_size, output_len, cuda_graphs=None, encode_batched=True,
                 eos_seed=None, share_prefix=None):
        super().__init__(model, beam_size=beam_size, cuda_graphs=cuda_graphs,
                         encode_batched=encode_batched, share_prefix=share_prefix)
        self.output_len = output_len
        self.eos_seed = eos_seed

    def output_lengths(self, count):
        """The number of tokens before EOS of each of ``count`` utterances."""
        if self.eos_seed is None:
            return [self.output_len] * count
        draw = random.Random(self.eos_seed)
        return [draw.randint(max(1, self.output_len // 4), self.output_len)
                for _ in range(count)]

    def length_limits(self, prefix_lengths):
        lengths = self.output_lengths(len(prefix_lengths))
        return lengths, lengths


def snapshot(cache):
    """What one decode step changes in a cache, to undo it between timed repeats."""
    if isinstance(cache, LatentCache):  # the update kernel writes these in place
        return dict(num_tokens=cache.num_tokens, next_position=cache.next_position.clone(),
                    num_entries=cache.num_entries.clone(), first_chunk=cache.first_chunk.clone())
    if isinstance(cache, KVCache):
        return dict(num_tokens=cache.num_tokens, next_position=cache.next_position.clone())
    if isinstance(cache, PaperStyleCache):
        return dict(keys=cache.keys, values=cache.values, next_position=cache.next_position)
    return dict(state={k: dict(v) for k, v in cache.state.items()},
                next_position=cache.next_position)


def restore(cache, saved):
    for name, value in saved.items():
        if name == "state":
            value = {k: dict(v) for k, v in value.items()}
        elif isinstance(value, torch.Tensor):
            value = value.clone()
        setattr(cache, name, value)


def bytes_per_token(make_cache) -> float:
    """Cache bytes per token of a layer, asked from a cache of 12 tokens that
    ``make_cache(batch, length)`` fills (12: a whole number of chunks for s = 1..4)."""
    return make_cache(1, 12).nbytes() / 12


def decode_subject(variant, variants, size, latent, device, dtype):
    """(module, filled-cache factory (batch, length) -> cache) of a decode-sweep variant:
    one of ``variants`` (name -> (attention, conf)), or a baseline: ``mha_paper`` or
    ``reference_mtla_s2`` (with the ``latent`` sizes)."""
    d_model, heads = size["d_model"], size["heads"]
    torch.manual_seed(0)
    if variant == "mha_paper":
        module = PaperStyleMHA(build_attention("mha", d_model, heads)).to(device, dtype).eval()

        def make(batch, length):
            cache = module.make_cache(batch, device)
            shape = (batch, length, heads, d_model // heads)
            cache.append(torch.randn(shape, device=device, dtype=dtype),
                         torch.randn(shape, device=device, dtype=dtype))
            cache.next_position.fill_(length)
            return cache

        return module, make
    if variant == "reference_mtla_s2":
        conf = {**latent, "down_rate": 2}
        module = ReferenceMTLA(d_model, heads, **conf).to(device, dtype).eval()

        def make(batch, length):
            cache = module.make_cache(batch, device)
            entries = math.ceil(length / 2)
            cache.state[module.reference._get_full_incremental_state_key("attn_state")] = {
                "prev_kv_t": torch.randn(batch, entries, conf["kv_lora_rank"], device=device,
                                         dtype=dtype),
                "prev_k_pe": torch.randn(batch, entries, conf["qk_rope_head_dim"],
                                         device=device, dtype=dtype),
                "infer_steps": torch.full((batch,), length, device=device),
            }
            cache.next_position.fill_(length)
            return cache

        return module, make
    attention, conf = variants[variant]
    module = build_attention(attention, d_model, heads, **conf).to(device, dtype).eval()
    return module, lambda batch, length: filled_cache(module, batch, length, device, dtype)


def training_stack(attention, conf, size, device, dtype, compile=False) -> DecoderOnlyStack:
    """The benchmark's decoder stack (no dropout), seeded, for training steps; ``compile``:
    its layers through torch.compile, as ``decoder_conf: {compile: true}`` trains."""
    torch.manual_seed(0)
    return DecoderOnlyStack(size["vocab"], size["d_model"], size["heads"],
                            size["decoder_layers"], size["ffn"], 0.0, attention,
                            conf, compile=compile).to(device, dtype)


def training_step(model, batch, length, device, compiled=False):
    """A function running one forward + backward of ``model`` on random tokens (B, T)
    (through torch.compile when ``compiled``, a bool or torch.compile's ``mode``, e.g.
    "reduce-overhead": CUDA graphs; its first calls compile)."""
    tokens = torch.randint(0, model.embed.num_embeddings, (batch, length), device=device)
    positions = torch.arange(length, device=device).expand(batch, -1)
    mode = compiled if isinstance(compiled, str) else None
    stack = torch.compile(model, mode=mode) if compiled else model

    def step():
        hidden = stack(model.embed(tokens), positions, None)
        loss = F.cross_entropy(model.logits(hidden).flatten(0, 1).float(), tokens.flatten())
        loss.backward()

    return step
