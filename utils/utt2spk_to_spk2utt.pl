#!/usr/bin/env bash
# Usage: utils/utt2spk_to_spk2utt.pl <utt2spk>   print spk2utt
# (espnet2_mtla.utils.datadir; run with the project's Python: . tools/activate_python.sh)
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2p' "$0" | sed 's/^# //'; exit 0
fi
exec "${PYTHON:-python3}" -m espnet2_mtla.utils.datadir utt2spk_to_spk2utt "$@"
