#!/usr/bin/env bash
# Builds data/{train,dev,test} of mini_sum: Debian package description -> synopsis (see local/README.md).
# Options go to espnet2_mtla.bin.make_mini_corpus summ (e.g. --num_train N --seed S).
set -euo pipefail
. ./path.sh
if [ "$(cat data/.done 2> /dev/null)" = "summ $*" ] && [ -f data/test/text ]; then
    echo "local/data.sh: data/ built already with options '$*'" >&2; exit 0
fi
python -m espnet2_mtla.bin.make_mini_corpus summ --out data --min_words 20 --max_words 80 "$@"
echo "summ $*" > data/.done
