"""Data preparation of the corpora the paper's recipes use, from their official layouts
into Kaldi data dirs: MuST-C (speech translation), AMI (speech recognition), SLURP
(spoken language understanding), XSum (summarisation). Each module has ``prepare(root,
out_dir)`` and ``HOW_TO_GET`` (printed when the corpus is not where db.sh says)."""


class CorpusError(RuntimeError):
    """The corpus is missing or not in its official layout; the message says what to do."""
