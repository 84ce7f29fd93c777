"""The decoder-only model: a decoder stack over a speech (or text) prefix."""
