#!/usr/bin/env bash
# Usage: utils/subset_data_dir.sh (--first N | --last N | --utt-list F | --num N) <src-dir> <dest-dir>
# (espnet2_mtla.utils.datadir; run with the project's Python: . tools/activate_python.sh)
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2p' "$0" | sed 's/^# //'; exit 0
fi
exec "${PYTHON:-python3}" -m espnet2_mtla.utils.datadir subset "$@"
