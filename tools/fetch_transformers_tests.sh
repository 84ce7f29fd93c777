#!/usr/bin/env bash
# Transformers' common model tests (ModelTesterMixin of tests/test_modeling_common.py) for
# the pinned Transformers release, from that release's source distribution on PyPI, into
# a side folder of the shared environment store (built once, reused). test/test_hf_common.py
# runs them against the LlamaMTLA classes. Nothing is copied into this repository.
#
# The sdist ships tests/*.py but not the subpackages test_modeling_common.py imports
# (tests/exporters, tests/generation): the folder gets empty ExportTesterMixin and
# GenerationTesterMixin base classes in their place, so torch.export's mixin tests and
# the generation mixin do not run from it (test/test_hf.py covers generation against full
# recomputation).
#
# Usage: tools/fetch_transformers_tests.sh   (after tools/setup_env.sh); prints the folder
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python="${root}/tools/venv/bin/python"
store=${ESPNET2_MTLA_ENV_STORE:-$HOME/.cache/espnet2-mtla}
release=$("${python}" -c 'import transformers; print(transformers.__version__)')
side="${store}/transformers-tests-${release}"
mkdir -p "${store}"
(
    flock 9
    if [ ! -f "${side}/.complete" ]; then
        rm -rf "${side}"
        tmp=$(mktemp -d)
        trap 'rm -rf "${tmp}"' EXIT
        echo "[fetch_transformers_tests] transformers ${release} sdist -> ${side}" >&2
        "${python}" -m pip download --no-input --quiet --no-deps --no-binary :all: \
            --dest "${tmp}" "transformers==${release}"
        tar -xzf "${tmp}/transformers-${release}.tar.gz" -C "${tmp}" \
            "transformers-${release}/tests/test_modeling_common.py"
        package="${side}/hf_common_tests"
        mkdir -p "${package}/exporters" "${package}/generation"
        cp "${tmp}/transformers-${release}/tests/test_modeling_common.py" "${package}/"
        touch "${package}/__init__.py" "${package}/exporters/__init__.py" \
            "${package}/generation/__init__.py"
        printf '%s\n' '"""Not in the sdist: an empty base class in its place."""' '' \
            'class ExportTesterMixin:' '    pass' > "${package}/exporters/test_export.py"
        printf '%s\n' '"""Not in the sdist: an empty base class in its place."""' '' \
            'class GenerationTesterMixin:' '    pass' > "${package}/generation/test_utils.py"
        touch "${side}/.complete"
    fi
) 9>"${side}.lock"
echo "${side}"
