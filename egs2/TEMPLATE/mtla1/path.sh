# Sourced by every recipe script: the project's Python environment and utils/ on PATH.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
export MAIN_ROOT
# shellcheck disable=SC1091
. "${MAIN_ROOT}/tools/activate_python.sh"
export PATH="${PWD}/utils:${PATH}"
export PYTHONIOENCODING=UTF-8 OMP_NUM_THREADS=1
