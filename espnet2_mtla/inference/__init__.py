"""Decoding: batched beam search and the efficiency report."""
