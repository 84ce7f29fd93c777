#!/usr/bin/env bash
# Builds data/{train,dev,test} of mini_slu: spoken home-assistant commands with SLURP-style intents (see local/README.md).
# Options go to espnet2_mtla.bin.make_mini_corpus slu (e.g. --num_train N --seed S).
set -euo pipefail
. ./path.sh
if [ "$(cat data/.done 2> /dev/null)" = "slu $*" ] && [ -f data/test/text ]; then
    echo "local/data.sh: data/ built already with options '$*'" >&2; exit 0
fi
python -m espnet2_mtla.bin.make_mini_corpus slu --out data  "$@"
echo "slu $*" > data/.done
