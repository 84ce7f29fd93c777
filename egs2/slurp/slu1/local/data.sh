#!/usr/bin/env bash
# Kaldi data dirs of slurp from the corpus folder set in db.sh ($SLURP), in its official layout
# (see espnet2_mtla/corpora/slurp.py). Without it: says what to download, exits 1.
set -euo pipefail
. ./path.sh
. ./db.sh
python -m espnet2_mtla.bin.prepare_corpus slurp --root "${SLURP}" --out data "$@"
