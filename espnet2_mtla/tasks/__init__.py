"""ESPnet2 tasks (import espnet)."""

from espnet2_mtla.compat import require_espnet

require_espnet("espnet2_mtla.tasks (training and decoding)")
