#!/usr/bin/env bash
# Run the Transformers tests (test/test_hf.py) on every release that
# espnet2_mtla.hf.versions.TESTED names besides the pinned one (that one runs in the
# main suite). Each release lives in a side folder of the shared environment store,
# built once (transformers alone, --no-deps: the rest comes from the main environment)
# and reused; its folder goes first on PYTHONPATH.
#
# Usage: tools/test_transformers_releases.sh [pytest options]   (after tools/setup_env.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python="${root}/tools/venv/bin/python"
store=${ESPNET2_MTLA_ENV_STORE:-$HOME/.cache/espnet2-mtla}
pinned=$("${python}" -c 'import transformers; print(transformers.__version__)')
releases=$("${python}" -c 'from espnet2_mtla.hf.versions import TESTED; print(*TESTED)')
for release in ${releases}; do
    [ "${release}" = "${pinned}" ] && continue
    side="${store}/transformers-${release}"
    (
        flock 9
        if [ ! -f "${side}/.complete" ]; then
            rm -rf "${side}"
            echo "[test_transformers_releases] installing transformers ${release} into ${side}"
            "${python}" -m pip install --no-input --quiet --no-deps --target "${side}" \
                "transformers==${release}"
            touch "${side}/.complete"
        fi
    ) 9>"${side}.lock"
    echo "[test_transformers_releases] test/test_hf.py on transformers ${release}"
    PYTHONPATH="${side}${PYTHONPATH:+:${PYTHONPATH}}" "${python}" -c \
        "import transformers, sys; v = transformers.__version__; sys.exit(v != '${release}' and f'found transformers {v}, expected ${release}')"
    PYTHONPATH="${side}${PYTHONPATH:+:${PYTHONPATH}}" "${python}" -m pytest "${root}/test/test_hf.py" "$@"
done
