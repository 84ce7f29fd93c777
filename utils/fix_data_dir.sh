#!/usr/bin/env bash
# Usage: utils/fix_data_dir.sh <data-dir>   sort files, keep utterances present in every file, regenerate spk2utt, report what was dropped (originals in <dir>/.backup)
# (espnet2_mtla.utils.datadir; run with the project's Python: . tools/activate_python.sh)
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2p' "$0" | sed 's/^# //'; exit 0
fi
exec "${PYTHON:-python3}" -m espnet2_mtla.utils.datadir fix "$@"
