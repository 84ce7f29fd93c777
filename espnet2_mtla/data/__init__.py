"""Kaldi-style data directories (read, check, fix, subset, combine, perturb) and audio
checks: what the top-level utils/ scripts and the recipes call."""
