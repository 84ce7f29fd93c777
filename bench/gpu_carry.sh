#!/usr/bin/env bash
# Assembles the folder that the GPU recipe scripts carry to a lent machine with no network
# (bench/gpu_mini_recipes.sh, bench/recipe_choices.sh, bench/lm_probe.py; name it in the
# device call's carry): run here, where PyPI and Debian are reachable. ~53 MB.
#
#   bench/gpu_carry.sh <dir>      (e.g. .gpu, ignored by git)
#
# <dir>/wheels/        what the task's imports need beyond the GPU image (bench/offline_wheels.sh)
# <dir>/*.deb          espeak-ng and the libraries the GPU image lacks (speech of mini_en/slu/en_de)
# <dir>/*Translation-en*   Debian's English package descriptions (the text of the mini corpora)
# <dir>/*Translation-de*   their German translations (mini_en_de --st_source synopses/both; 3.4 MB)
# <dir>/mo_root/       the German gettext catalogs of mini_en_de (its larger GPU set), unpacked
set -euo pipefail
dir=${1:?usage: $0 <dir>}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "${dir}"
dir=$(cd "${dir}" && pwd)
"${root}/bench/offline_wheels.sh" "${dir}/wheels"
(cd "${dir}" && apt-get download espeak-ng espeak-ng-data libespeak-ng1 libpcaudio0 libsonic0 \
    libasound2 libpulse0 libasyncns0 libdbus-1-3 libsndfile1 libflac12 libmp3lame0 \
    libmpg123-0 libogg0 libopus0 libvorbis0a libvorbisenc2 libx11-xcb1)
cp /var/lib/apt/lists/*_main_i18n_Translation-en* "${dir}/" \
    || { echo "$0: no Translation-en index under /var/lib/apt/lists (apt-get update first)" >&2; exit 1; }
cp /var/lib/apt/lists/*_main_i18n_Translation-de* "${dir}/" \
    || { echo "$0: no Translation-de index under /var/lib/apt/lists (tools/install_mini_sources.sh fetches it)" >&2; exit 1; }
downloads=$(mktemp -d)
"${root}/tools/venv/bin/python" -c "import sys; from pathlib import Path; \
from espnet2_mtla.mini.gettext_pairs import fetch_catalogs, MORE_CATALOG_PACKAGES as more; \
fetch_catalogs(Path(sys.argv[1]), more)" "${downloads}"
rm -rf "${dir}/mo_root"; mv "${downloads}/root" "${dir}/mo_root"; rm -rf "${downloads}"
du -sh "${dir}"
