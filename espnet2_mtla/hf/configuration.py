"""``LlamaMTLAConfig``: a Llama config plus the latent-attention sizes."""

import copy

from transformers import LlamaConfig

# Transformers' rope types (LlamaConfig.rope_parameters["rope_type"]) whose frequencies are
# fixed: applied to the latent attention's decoupled rope key and query
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "yarn")


class LlamaMTLAConfig(LlamaConfig):
    """Llama with MTLA self-attention. Build one from a Llama config with
    ``LlamaMTLAConfig(**llama_config.to_dict(), down_rate=2)``. ``down_rate`` 1 is MLA.
    ``recompute_prompt_attn`` is kept for compatibility with the reference package's
    configs; it does not change the outputs here. ``offset_gain`` (down_rate > 1): a
    learned gain per offset in the chunk on the normalised latent (the attention module's
    option of that name)."""

    model_type = "llama-mtla"
    # no tensor-parallel plan: Llama's names q/k/v/o_proj that the latent attention does
    # not have, and its per-head views assume all heads on one device
    base_model_tp_plan = None

    def __init__(self, kv_lora_rank=256, q_lora_rank=0, qk_nope_head_dim=64,
                 qk_rope_head_dim=32, v_head_dim=64, down_rate=2, recompute_prompt_attn=True,
                 offset_gain=False, **kwargs):
        kwargs.pop("model_type", None)
        self.kv_lora_rank = kv_lora_rank
        self.q_lora_rank = q_lora_rank
        self.qk_nope_head_dim = qk_nope_head_dim
        self.qk_rope_head_dim = qk_rope_head_dim
        self.v_head_dim = v_head_dim
        self.down_rate = down_rate
        self.recompute_prompt_attn = recompute_prompt_attn
        self.offset_gain = bool(offset_gain)
        super().__init__(**kwargs)
        if down_rate < 1:
            raise ValueError(f"down_rate must be >= 1, got {down_rate}")
        if offset_gain and down_rate == 1:
            raise ValueError("offset_gain needs down_rate > 1 (MLA merges nothing)")
        if kv_lora_rank % 4:
            raise ValueError(f"kv_lora_rank must be divisible by 4, got {kv_lora_rank}")
        rope_type = (self.rope_parameters or {}).get("rope_type", "default")
        if rope_type not in SUPPORTED_ROPE_TYPES:
            raise ValueError(
                f"rope scaling type {rope_type!r} is not supported by LlamaMTLA: "
                f"supported are {', '.join(SUPPORTED_ROPE_TYPES)} (rules that fix the "
                "frequencies once; 'dynamic' and 'longrope' change them with the length of "
                "each call, which the rotated keys held in the compressed cache cannot follow)")

    @property
    def rope_base(self) -> float:
        """RoPE's theta, from the rope parameters as LlamaConfig keeps them."""
        return float((self.rope_parameters or {}).get("rope_theta", 10000.0))

    def rope_rotation(self):
        """(inverse frequencies, scale) of the decoupled rope key of width
        qk_rope_head_dim under the config's rope type, from Transformers' own rules
        (``ROPE_INIT_FUNCTIONS``): (None, 1.0) for 'default' (theta's frequencies)."""
        rope_type = (self.rope_parameters or {}).get("rope_type", "default")
        if rope_type == "default":
            return None, 1.0
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        rope_config = copy.deepcopy(self)  # the rule reads the rotated width as head_dim
        rope_config.head_dim = self.qk_rope_head_dim
        parameters = dict(rope_config.rope_parameters)
        parameters.pop("partial_rotary_factor", None)
        rope_config.rope_parameters = parameters
        frequencies, scale = ROPE_INIT_FUNCTIONS[rope_type](rope_config, device=None)
        return tuple(frequencies.tolist()), float(scale)
