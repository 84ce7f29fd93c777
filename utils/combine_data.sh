#!/usr/bin/env bash
# Usage: utils/combine_data.sh <dest-dir> <src-dir1> <src-dir2> ...   (a key in two sources is an error)
# (espnet2_mtla.utils.datadir; run with the project's Python: . tools/activate_python.sh)
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2p' "$0" | sed 's/^# //'; exit 0
fi
exec "${PYTHON:-python3}" -m espnet2_mtla.utils.datadir combine "$@"
