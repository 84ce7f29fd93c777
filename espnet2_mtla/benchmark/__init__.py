"""The benchmark behind ``python -m espnet2_mtla.bin.benchmark``: speed and memory of the
attention family side by side in one run.

- ``variants``: the attention variants (read from the repository's ``conf/attention/``)
  and the model sizes (the paper's, and tiny ones for a CPU smoke run).
- ``timing``: device timing, CUDA-graph replay timing, peak memory, the kernels switch.
- ``baselines``: the paper-style (fairseq) MHA and the reference ``mtla`` package's MTLA
  behind our layer interface.
- ``subjects``: what is measured: caches filled directly, the random-weight beam-search
  model, a fixed-length beam search.
- ``sections``: copy, decode, kernel, beam and train; each yields rows to a ``Report``.
- ``report``: printing rows, CSVs under ``--out``, plots.
"""
