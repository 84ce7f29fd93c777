"""ESPnet ``ClassChoices`` for the attention type: ``--attention`` / ``--attention_conf``.

In a YAML config::

    attention: mtla
    attention_conf:
        down_rate: 2
        kv_lora_rank: 256

The model builds each layer's module with
``build_attention(args.attention, d_model, num_heads, **args.attention_conf)``.
Importing this module imports espnet; ``espnet2_mtla.attention`` itself does not.
"""

from espnet2_mtla.compat import require_espnet

require_espnet("espnet2_mtla.attention.choices")

from espnet2.train.class_choices import ClassChoices  # noqa: E402

from espnet2_mtla.attention.base import SelfAttention  # noqa: E402
from espnet2_mtla.attention.factory import ATTENTION_CLASSES  # noqa: E402

attention_choices = ClassChoices(
    "attention", classes=ATTENTION_CLASSES, type_check=SelfAttention, default="mtla"
)
