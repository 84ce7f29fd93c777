"""ESPnet2 tasks (import espnet)."""
