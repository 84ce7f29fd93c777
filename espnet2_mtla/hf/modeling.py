"""``LlamaMTLAModel`` / ``LlamaMTLAForCausalLM``: Llama's decoder (RMSNorm, SwiGLU MLP)
with espnet2_mtla's MTLA self-attention (MLA when ``down_rate`` is 1).

Positions and padding come from ``attention_mask`` (B, past + new; 0 at padding, left
or right): each row's tokens are numbered from 0 over its real tokens, so a left-padded
batch gives each row the outputs it has alone. Rotary embeddings and the causal,
stride-aware masking happen inside the attention module; Transformers' mask utilities
are not used."""

from typing import Optional

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

from espnet2_mtla.attention import build_attention
from espnet2_mtla.hf.cache import MTLACache
from espnet2_mtla.hf.configuration import LlamaMTLAConfig

# Transformers 5.24 renamed the cache argument and output field ``past_key_values`` to
# ``cache`` (generate() passes the cache under that name and reads it back from the
# outputs); the model accepts both names and answers under the release's own.
CACHE_FIELD = ("cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__
               else "past_key_values")


def cache_argument(past_key_values, kwargs):
    """The cache given under either name (both at once is an error)."""
    cache = kwargs.pop("cache", None)
    if cache is not None and past_key_values is not None:
        raise ValueError("pass the cache once: cache= or past_key_values=, not both")
    return cache if cache is not None else past_key_values


def output_options(config, output_attentions, output_hidden_states, return_dict):
    """(output_attentions, output_hidden_states, return_dict) of a call, the config's
    where not given."""
    if output_attentions is None:
        output_attentions = config.output_attentions
    if output_hidden_states is None:
        output_hidden_states = config.output_hidden_states
    if return_dict is None:
        return_dict = config.return_dict
    return bool(output_attentions), bool(output_hidden_states), bool(return_dict)


def attention_over_time(weights, key_positions, attention_mask, total):
    """A layer's probabilities over its keys (B, H, Tq, K) placed at time steps
    (B, H, Tq, total), as Llama's attentions: each key (a chunk state with s > 1) at the
    step of the newest token it covers, zero elsewhere. key_positions (B, K): that
    token's position (-1: no key); attention_mask (B, >= total) says which steps are
    real (position p is the row's (p + 1)-th real step), None: position p is step p."""
    batch = weights.shape[0]
    if attention_mask is None:
        time_of_key = key_positions.clamp(max=total)
    else:
        real = attention_mask[:, -total:].to(device=weights.device, dtype=torch.bool)
        position_of_step = real.long().cumsum(-1) - 1  # (B, total)
        step_of_position = torch.full((batch, total + 1), total, device=weights.device)
        steps = torch.arange(total, device=weights.device).expand(batch, -1)
        step_of_position.scatter_(1, torch.where(real, position_of_step, total), steps)
        step_of_position[:, total] = total  # the dummy slot of padded steps
        time_of_key = step_of_position.gather(1, key_positions.clamp(0, total))
    time_of_key = torch.where(key_positions >= 0, time_of_key, total)  # (B, K)
    placed = weights.new_zeros(*weights.shape[:3], total + 1)
    placed.scatter_add_(3, time_of_key[:, None, None, :].expand_as(weights), weights)
    return placed[..., :total]


def latent_attention(config: LlamaMTLAConfig, rope_rotation=(None, 1.0)) -> nn.Module:
    """The layer's MLA/MTLA module; rope_rotation: (frequencies, scale) of the config's
    rope type (``config.rope_rotation()``, computed once for all layers)."""
    frequencies, scale = rope_rotation
    sizes = dict(kv_lora_rank=config.kv_lora_rank, q_lora_rank=config.q_lora_rank,
                 qk_nope_head_dim=config.qk_nope_head_dim,
                 qk_rope_head_dim=config.qk_rope_head_dim, v_head_dim=config.v_head_dim,
                 dropout=config.attention_dropout, bias=config.attention_bias,
                 rope_base=config.rope_base, rope_frequencies=frequencies, rope_scale=scale)
    if config.down_rate == 1:
        return build_attention("mla", config.hidden_size, config.num_attention_heads, **sizes)
    return build_attention("mtla", config.hidden_size, config.num_attention_heads,
                           down_rate=config.down_rate,
                           offset_gain=config.offset_gain, **sizes)


class LlamaMTLAMLP(LlamaMLP):
    """Llama's gated MLP, its weights and names; without gradients the gate's activation
    is multiplied by the up projection in place, so two (B, T, FFN) intermediates are
    live at once instead of three: the same numbers, ~1/3 less MLP memory in a prefill,
    where the MLP's intermediates make the peak once the cache is compressed (MTLA
    s = 4 at 16 x 8000, bench/results/h200_2026-12-01_s22)."""

    def forward(self, x):
        if torch.is_grad_enabled():
            return super().forward(x)
        hidden = self.act_fn(self.gate_proj(x))  # (B, T, FFN)
        hidden *= self.up_proj(x)
        return self.down_proj(hidden)


class LlamaMTLADecoderLayer(GradientCheckpointingLayer):
    """Llama's layer with the latent attention. Under gradient checkpointing (training)
    Transformers' base class recomputes it in the backward pass and drops its cache (the
    attention writes its cache, which a replay would write twice)."""

    def __init__(self, config: LlamaMTLAConfig, rope_rotation=(None, 1.0)):
        super().__init__()
        self.self_attn = latent_attention(config, rope_rotation)
        self.mlp = LlamaMTLAMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden, positions, padding, past_key_values=None, output_attentions=False):
        """hidden (B, T, D); positions (B, T); padding (B, T) bool or None;
        past_key_values: this layer's LatentCache or None. Returns the new hidden
        states, with (probabilities, key positions) when output_attentions."""
        attended = self.self_attn(self.input_layernorm(hidden), key_padding_mask=padding,
                                  position=positions, cache=past_key_values,
                                  need_weights=output_attentions)
        weights = None
        if output_attentions:
            attended, weights = attended
        hidden = hidden + attended
        hidden = hidden + self.mlp(self.post_attention_layernorm(hidden))
        return hidden if weights is None else (hidden, weights)


class LlamaMTLAPreTrainedModel(PreTrainedModel):
    config_class = LlamaMTLAConfig
    config: LlamaMTLAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaMTLADecoderLayer"]
    _skip_keys_device_placement = [CACHE_FIELD]

    @classmethod
    def from_pretrained(cls, *args, strict: bool = True, **kwargs):
        """Transformers' loader, strict by default: weights of the model that the
        checkpoint does not hold (left random) or holds with another shape are an error
        naming the checkpoint and the first keys, not a log warning. Keys the model
        does not use (a causal LM's head loaded into the base model) stay ignored, as in
        Transformers. ``strict=False`` (or ``ignore_mismatched_sizes=True`` for shapes)
        gives Transformers' lenient behaviour."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        missing = sorted(info.get("missing_keys") or [])
        mismatched = [] if kwargs.get("ignore_mismatched_sizes") else [
            str(entry[0]) if isinstance(entry, (tuple, list)) else str(entry)
            for entry in info.get("mismatched_keys") or []]
        if strict and (missing or mismatched):
            source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            problems = []
            if missing:
                problems.append(f"{len(missing)} weights missing ({', '.join(missing[:3])})")
            if mismatched:
                problems.append(f"{len(mismatched)} of another shape "
                                f"({', '.join(mismatched[:3])})")
            raise ValueError(f"{source} does not fit {cls.__name__} with its config: "
                             + "; ".join(problems) + " (strict=False loads it anyway, "
                             "with those weights newly initialised)")
        return (model, info) if want_info else model


class LlamaMTLAModel(LlamaMTLAPreTrainedModel):
    def __init__(self, config: LlamaMTLAConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size,
                                         config.pad_token_id)
        rope_rotation = config.rope_rotation()
        self.layers = nn.ModuleList(LlamaMTLADecoderLayer(config, rope_rotation)
                                    for _ in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None,
                past_key_values: Optional[MTLACache] = None, inputs_embeds=None,
                use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, **kwargs) -> BaseModelOutputWithPast:
        """Llama's conventions: ``output_hidden_states`` gives the embeddings, each
        layer's output and the final normed state ((num_layers + 1) tensors, the last
        normed, as LlamaModel); ``return_dict=False`` (or config.return_dict False)
        a tuple. ``output_attentions`` gives each layer's attention probabilities
        (B, H, Tq, past + new) on the explicit path (no fused kernels): with s > 1 each
        key is a merged chunk, shown at the step of its newest token (``attention_over_time``)."""
        past_key_values = cache_argument(past_key_values, kwargs)
        output_attentions, output_hidden_states, return_dict = output_options(
            self.config, output_attentions, output_hidden_states, return_dict)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if past_key_values is not None and not isinstance(past_key_values, MTLACache):
            raise TypeError(f"past_key_values must be an MTLACache (the compressed latent "
                            f"cache), got {type(past_key_values).__name__}")
        if use_cache and past_key_values is None:
            past_key_values = MTLACache(self.config.num_hidden_layers)
        if past_key_values is not None:  # an eager forward: the caches out of static mode
            past_key_values.leave_graphs()
        refed = 0  # tokens of a chunk a crop cut, fed again first (their outputs dropped)
        if past_key_values is not None:
            refeed = past_key_values.take_refeed()
            if refeed is not None:
                input_ids, position_ids, refed = self._with_refeed(
                    refeed, input_ids, inputs_embeds, position_ids)
            past_key_values.record(input_ids)
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        batch, length = hidden.shape[:2]
        positions, padding = self._positions_and_padding(
            attention_mask, position_ids, past_key_values, batch, length, hidden.device)
        states = []  # each layer's input, kept only when hidden states are asked for
        attentions = []  # each layer's (probabilities, key positions), when asked for
        fresh = past_key_values is None or past_key_values.layers[0].get_seq_length() == 0
        for layer, cache_layer in zip(self.layers, past_key_values.layers
                                      if past_key_values is not None else [None] * len(self.layers)):
            cache = None
            if cache_layer is not None:
                if cache_layer.latent is None:
                    cache_layer.latent = layer.self_attn.make_cache(
                        batch, hidden.device, hidden.dtype,
                        capacity=past_key_values.max_tokens or 0)
                cache = cache_layer.latent
            if output_hidden_states:
                states.append(hidden)
            hidden = layer(hidden, positions, padding, past_key_values=cache,
                           output_attentions=output_attentions)
            if output_attentions:
                hidden, weights = hidden
                attentions.append(weights)
        hidden = self.norm(hidden)
        if attentions and fresh:  # keys = the steps of this call: the probabilities
            # as computed (the tensors the outputs were made from, when nothing was re-fed)
            attentions = [weights[:, :, refed:] if refed else weights for weights, _ in attentions]
        elif attentions:
            total = (attention_mask.shape[1] if attention_mask is not None
                     else past_key_values.layers[0].get_seq_length())
            attentions = [attention_over_time(weights, key_positions, attention_mask,
                                              total)[:, :, refed:]
                          for weights, key_positions in attentions]
        if refed:
            hidden, states = hidden[:, refed:], [state[:, refed:] for state in states]
        # as LlamaModel: the embeddings, the output of every layer but the last, and the
        # final normed state
        outputs = BaseModelOutputWithPast(
            last_hidden_state=hidden,
            hidden_states=(*states, hidden) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            **{CACHE_FIELD: past_key_values if use_cache else None})
        return outputs if return_dict else outputs.to_tuple()

    @staticmethod
    def _with_refeed(refeed, input_ids, inputs_embeds, position_ids):
        """(input_ids, position_ids, count) with a crop's re-fed ids (B, p) in front."""
        if input_ids is None:
            raise ValueError("the cache was cropped inside a merged chunk, whose tokens are "
                             "fed again as ids: continue with input_ids, not inputs_embeds")
        count = refeed.shape[1]
        if position_ids is not None:  # the re-fed tokens precede the first new position
            before = torch.arange(-count, 0, device=position_ids.device)
            position_ids = torch.cat([position_ids[:, :1] + before, position_ids], dim=1)
        return torch.cat([refeed.to(input_ids.device), input_ids], dim=1), position_ids, count

    @staticmethod
    def _positions_and_padding(attention_mask, position_ids, cache, batch, length, device):
        """Positions (B, T) and padding (B, T) of the new tokens (padding None: none)."""
        if attention_mask is None:
            real = torch.ones(batch, length, dtype=torch.bool, device=device)
        else:
            if attention_mask.dim() != 2 or attention_mask.shape[0] != batch \
                    or attention_mask.shape[1] < length:
                raise ValueError(f"attention_mask must be (batch, past + new) = ({batch}, "
                                 f">= {length}) of 0/1, got {tuple(attention_mask.shape)}")
            real = attention_mask[:, -length:].to(device=device, dtype=torch.bool)
        if position_ids is None:
            latent = cache.layers[0].latent if cache is not None else None
            past = (latent.next_position if latent is not None
                    else torch.zeros(batch, dtype=torch.long, device=device))
            position_ids = (past[:, None] + real.long().cumsum(-1) - 1).clamp(min=0)
        if attention_mask is None:
            padding = None
        elif torch.compiler.is_compiling():
            # traced (torch.export / torch.compile): the mask always, no data-dependent
            # branch; the same outputs as without it when nothing is padded
            padding = ~real
        else:
            padding = None if bool(real.all()) else ~real
        return position_ids.to(device), padding


class LlamaMTLAForCausalLM(LlamaMTLAPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LlamaMTLAConfig):
        super().__init__(config)
        self.model = LlamaMTLAModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None,
                past_key_values=None, inputs_embeds=None, labels=None, use_cache=None,
                logits_to_keep=0, output_attentions=None, output_hidden_states=None,
                return_dict=None, **kwargs) -> CausalLMOutputWithPast:
        past_key_values = cache_argument(past_key_values, kwargs)
        output_attentions, output_hidden_states, return_dict = output_options(
            self.config, output_attentions, output_hidden_states, return_dict)
        plain_step = (labels is None and inputs_embeds is None and not output_attentions
                      and not output_hidden_states and isinstance(logits_to_keep, int))
        if plain_step and self._graphs_apply(past_key_values, input_ids, attention_mask,
                                             use_cache):
            logits = past_key_values.graphed_logits(self, input_ids, position_ids)
            result = CausalLMOutputWithPast(logits=logits[:, None],  # (B, 1, V)
                                            **{CACHE_FIELD: past_key_values})
            return result if return_dict else result.to_tuple()
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask,
                             position_ids=position_ids, past_key_values=past_key_values,
                             inputs_embeds=inputs_embeds, use_cache=use_cache,
                             output_attentions=output_attentions,
                             output_hidden_states=output_hidden_states, return_dict=True)
        hidden = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        elif not isinstance(logits_to_keep, int):
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels,
                                      vocab_size=self.config.vocab_size, **kwargs)
        result = CausalLMOutputWithPast(loss=loss, logits=logits,
                                        hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions,
                                        **{CACHE_FIELD: getattr(outputs, CACHE_FIELD)})
        return result if return_dict else result.to_tuple()

    def _graphs_apply(self, cache, input_ids, attention_mask, use_cache) -> bool:
        """Whether this forward is a decode step for the captured graph (MTLACache): one
        real token per row, with the cache, no gradients (one device sync: the mask's
        newest column, where a mask is given)."""
        if not isinstance(cache, MTLACache) or input_ids is None:
            return False
        if use_cache is False or (use_cache is None and not self.config.use_cache):
            return False
        if self.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return False
        if not cache.graphs_apply(input_ids):
            return False
        return attention_mask is None or bool(attention_mask[:, -1].all())

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        """generate() gets the compressed latent cache unless told not to cache; with
        num_beams > 1 its beams share each prompt's entries (``MTLACache(share_prefix)``;
        pass an ``MTLACache(num_layers)`` to copy them into every beam instead). The
        cache holds room for max_length steps, so that its decode steps can be replayed
        from CUDA graphs (``MTLACache(..., cuda_graphs=False)`` passed in: never)."""
        if generation_config.cache_implementation not in (None, "dynamic"):
            raise ValueError(f"cache_implementation={generation_config.cache_implementation!r}"
                             " is not supported: MTLA models use their own MTLACache")
        given = model_kwargs.get(CACHE_FIELD)
        beams = generation_config.num_beams or 1
        max_tokens = generation_config.max_length  # (prompt + new tokens: set by now)
        if given is None and generation_config.use_cache:
            given = model_kwargs[CACHE_FIELD] = MTLACache(
                self.config.num_hidden_layers, share_prefix=beams > 1, max_tokens=max_tokens)
            given.group_size = beams
            return
        if isinstance(given, MTLACache):
            if given.max_tokens is None or given.max_tokens < max_tokens:
                given.max_tokens = max_tokens  # (room for this generation)
            if given.share_prefix:
                given.group_size = beams  # (beams share each prompt)
        return super()._prepare_cache_for_generation(generation_config, model_kwargs,
                                                     *args, **kwargs)
