#!/usr/bin/env bash
# Usage: utils/split_scp.pl <scp> <out1> [<out2> ...]   split into consecutive parts of sizes within one line
# (espnet2_mtla.utils.datadir; run with the project's Python: . tools/activate_python.sh)
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2p' "$0" | sed 's/^# //'; exit 0
fi
exec "${PYTHON:-python3}" -m espnet2_mtla.utils.datadir split "$@"
