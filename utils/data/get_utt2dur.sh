#!/usr/bin/env bash
# Usage: utils/data/get_utt2dur.sh <data-dir>   write utt2dur in seconds (from segments or the audio headers)
# (espnet2_mtla.utils.datadir; run with the project's Python: . tools/activate_python.sh)
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2p' "$0" | sed 's/^# //'; exit 0
fi
exec "${PYTHON:-python3}" -m espnet2_mtla.utils.datadir utt2dur "$@"
