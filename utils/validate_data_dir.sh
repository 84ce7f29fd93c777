#!/usr/bin/env bash
# Usage: utils/validate_data_dir.sh <data-dir>   report problems (sorted files, consistent keys, empty transcripts); exit 1 if any
# (espnet2_mtla.utils.datadir; run with the project's Python: . tools/activate_python.sh)
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2p' "$0" | sed 's/^# //'; exit 0
fi
exec "${PYTHON:-python3}" -m espnet2_mtla.utils.datadir validate "$@"
