#!/usr/bin/env bash
# Source this file to enter the project's Python environment (tools/venv):
#     . tools/activate_python.sh
# Build it first with `make env` (or tools/setup_env.sh).
_mtla_tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -f "$_mtla_tools/venv/.complete" ]; then
    echo "activate_python.sh: $_mtla_tools/venv is missing; run: make -C $_mtla_tools/.. env" >&2
    return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_mtla_tools/venv/bin/activate"
unset _mtla_tools
