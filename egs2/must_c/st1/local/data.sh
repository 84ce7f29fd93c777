#!/usr/bin/env bash
# Kaldi data dirs of must_c from the corpus folder set in db.sh ($MUSTC), in its official layout
# (see espnet2_mtla/corpora/must_c.py). Without it: says what to download, exits 1.
set -euo pipefail
. ./path.sh
. ./db.sh
python -m espnet2_mtla.bin.prepare_corpus must_c --root "${MUSTC}" --out data "$@"
