#!/usr/bin/env bash
# Build the Python environment and install espnet2_mtla into tools/venv.
#
# The dependencies (~7 GB: torch with CUDA libraries, espnet, s3prl, ...) live in a
# shared environment outside the checkout, keyed by a hash of tools/requirements.lock
# and the Python version, so every checkout reuses one build:
#     ${ESPNET2_MTLA_ENV_STORE:-~/.cache/espnet2-mtla}/env-<hash>
# It is built from scratch when absent (or left incomplete by an interrupted build).
# tools/venv is a small per-checkout venv that sees the shared packages through a .pth
# file and has this checkout installed in editable mode.
#
# Usage: tools/setup_env.sh            (idempotent; prints what it does)
#        PYTHON=/path/to/python3.11 tools/setup_env.sh
set -euo pipefail

if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
    python=$(command -v python3.11 || command -v python3 || true)
fi
if [ -z "$python" ] || ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "tools/setup_env.sh: Python 3.11 is required (espnet 202511); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

lock="$root/tools/requirements.lock"
key=$( (cat "$lock"; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-12)
store=${ESPNET2_MTLA_ENV_STORE:-$HOME/.cache/espnet2-mtla}
shared="$store/env-$key"
mkdir -p "$store"

(
    flock 9  # one build at a time per store
    if [ ! -f "$shared/.complete" ]; then
        rm -rf "$shared"
        echo "[setup_env] building the shared environment $shared (several GB, minutes)"
        "$python" -m venv "$shared"
        # the pip that venv ships (< 25) is required: pip >= 25 refuses ci_sdr (espnet)
        "$shared/bin/python" -m pip install --no-input --progress-bar off -r "$lock"
        touch "$shared/.complete"
    fi
) 9>"$store/env-$key.lock"

venv="$root/tools/venv"
if [ ! -f "$venv/.complete" ] || [ "$(cat "$venv/.complete")" != "$shared" ]; then
    echo "[setup_env] creating $venv on top of $shared"
    rm -rf "$venv"
    "$python" -m venv --without-pip "$venv"
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    shared_site=$("$shared/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "import site; site.addsitedir('$shared_site')" > "$site/_espnet2_mtla_shared_env.pth"
    # the shared environment's pip installs this checkout (editable) into tools/venv
    "$venv/bin/python" -m pip install --no-input --quiet --no-deps --no-build-isolation -e "$root"
    "$venv/bin/python" -m pip check
    echo "$shared" > "$venv/.complete"
fi
