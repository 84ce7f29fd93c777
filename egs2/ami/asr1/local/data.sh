#!/usr/bin/env bash
# Kaldi data dirs of ami from the corpus folder set in db.sh ($AMI), in its official layout
# (see espnet2_mtla/corpora/ami.py). Without it: says what to download, exits 1.
set -euo pipefail
. ./path.sh
. ./db.sh
python -m espnet2_mtla.bin.prepare_corpus ami --root "${AMI}" --out data "$@"
