#!/usr/bin/env bash
# Kaldi data dirs of xsum from the corpus folder set in db.sh ($XSUM), in its official layout
# (see espnet2_mtla/corpora/xsum.py). Without it: says what to download, exits 1.
set -euo pipefail
. ./path.sh
. ./db.sh
python -m espnet2_mtla.bin.prepare_corpus xsum --root "${XSUM}" --out data "$@"
