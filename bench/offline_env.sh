#!/usr/bin/env bash
# tools/venv for a machine without network that already has torch (the lent GPU machines):
# a venv over the system's site-packages (its torch, triton, numpy, scipy, ...) plus the
# wheels in <wheel dir>, installed without dependencies, and this checkout on the path.
# Recipes and bench/multigpu_check.sh then find it as they find the usual tools/venv.
#
#   bench/offline_env.sh <wheel dir>
#
# The wheels are what the task's imports need and such an image lacks (for the H100/H200
# image of 2026-11: espnet 202511, s3prl, librosa, kaldiio, soundfile, typeguard,
# humanfriendly, ...; build them elsewhere with `pip download --no-deps --python-version
# 3.12 --platform manylinux2014_x86_64 --only-binary=:all:` or `pip wheel --no-deps`, at
# the versions of tools/requirements.lock). Refuses to replace an existing tools/venv.
set -euo pipefail
wheels=$(cd "${1:?usage: $0 <wheel dir>}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${root}/tools/venv
[ ! -e "${venv}" ] || { echo "$0: ${venv} exists; remove it first" >&2; exit 1; }
python3 -m venv --system-site-packages --without-pip "${venv}"
python3 -m pip --python "${venv}/bin/python" install --no-index --no-deps --quiet \
    "${wheels}"/*.whl
site=$("${venv}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# this checkout, and the system's package folders (Debian's dist-packages are not among
# the "system site-packages" a venv sees)
{ echo "${root}"; python3 -c 'import site; print("\n".join(site.getsitepackages()))'; } \
    > "${site}/espnet2_mtla_checkout.pth"
"${venv}/bin/python" -c "import espnet2_mtla.tasks.decoder_only, espnet2_mtla.bin.inference, \
espnet2_mtla.bin.score, espnet2.bin.tokenize_text" \
    || { echo "$0: the training/inference/scoring modules do not import with these wheels" >&2
         exit 1; }
touch "${venv}/.complete"
versions=$("${venv}/bin/python" -c \
    'import torch, espnet; print("torch", torch.__version__, "espnet", espnet.__version__)')
echo "$0: ${venv} ready (${versions})"
