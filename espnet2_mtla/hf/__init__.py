"""MTLA (and MLA, down_rate 1) causal LMs for Hugging Face Transformers.

    import espnet2_mtla.hf  # registers model_type "llama-mtla" with the Auto classes
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("path/to/llama-mtla")
    model.generate(input_ids, attention_mask=mask, num_beams=4)  # compressed cache

The attention is espnet2_mtla's own module; ``generate()`` keeps each layer's cache as a
temporally compressed latent cache (``MTLACache``), on by default.

Only the Transformers releases in ``versions.SUPPORTED`` are accepted: importing this
package with another one raises ImportError naming the installed and supported versions.
"""

import transformers

from espnet2_mtla.hf.versions import check_transformers_version

check_transformers_version(transformers.__version__)

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM  # noqa: E402

from espnet2_mtla.hf.cache import MTLACache  # noqa: E402
from espnet2_mtla.hf.configuration import LlamaMTLAConfig  # noqa: E402
from espnet2_mtla.hf.modeling import LlamaMTLAForCausalLM, LlamaMTLAModel  # noqa: E402


def register():
    """Map model_type "llama-mtla" to these classes in the Auto classes. Done on import;
    call it again after importing the reference ``mtla`` package's Transformers module,
    which registers its own classes under the same model type."""
    AutoConfig.register(LlamaMTLAConfig.model_type, LlamaMTLAConfig, exist_ok=True)
    AutoModel.register(LlamaMTLAConfig, LlamaMTLAModel, exist_ok=True)
    AutoModelForCausalLM.register(LlamaMTLAConfig, LlamaMTLAForCausalLM, exist_ok=True)


register()

__all__ = ["LlamaMTLAConfig", "LlamaMTLAModel", "LlamaMTLAForCausalLM", "MTLACache", "register"]
