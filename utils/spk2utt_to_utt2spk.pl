#!/usr/bin/env bash
# Usage: utils/spk2utt_to_utt2spk.pl <spk2utt>   print utt2spk
# (espnet2_mtla.utils.datadir; run with the project's Python: . tools/activate_python.sh)
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2p' "$0" | sed 's/^# //'; exit 0
fi
exec "${PYTHON:-python3}" -m espnet2_mtla.utils.datadir spk2utt_to_utt2spk "$@"
