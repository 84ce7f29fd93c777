#!/usr/bin/env bash
# Assembles the folder that the GPU recipe scripts carry to a lent machine with no network
# (bench/gpu_mini_recipes.sh, bench/recipe_choices.sh, bench/lm_probe.py; name it in the
# device call's carry): run here, where PyPI and Debian are reachable. ~58 MB.
#
#   bench/gpu_carry.sh <dir>      (e.g. .gpu, ignored by git)
#
# <dir>/wheels/        what the task's imports need beyond the GPU image (bench/offline_wheels.sh)
# <dir>/*.deb          espeak-ng and the libraries the GPU image lacks (speech of mini_en/slu/en_de)
# <dir>/*Translation-en.xz   Debian's English package descriptions (the text of the mini corpora)
# <dir>/*Translation-de.xz   their German translations (mini_en_de --st_source synopses/both; 1.3 MB)
# <dir>/mo_root.tar.xz  the German gettext catalogs of mini_en_de (its larger GPU set), unpacked
set -euo pipefail
dir=${1:?usage: $0 <dir>}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "${dir}"
dir=$(cd "${dir}" && pwd)
"${root}/bench/offline_wheels.sh" "${dir}/wheels"
(cd "${dir}" && apt-get download espeak-ng espeak-ng-data libespeak-ng1 libpcaudio0 libsonic0 \
    libasound2 libpulse0 libasyncns0 libdbus-1-3 libsndfile1 libflac12 libmp3lame0 \
    libmpg123-0 libogg0 libopus0 libvorbis0a libvorbisenc2 libx11-xcb1)
# The indices the text is read from (debian_text.translation_files: the main archive's,
# each once), recompressed with xz, which apt-helper reads as it reads lz4: 13 + 3.3 MB
# of lz4 are 5.7 + 1.5 MB of xz, and with them the carry stays under the device tool's 64 MiB.
rm -f "${dir}"/*_i18n_Translation-*
for language in en de; do
    indices=$("${root}/tools/venv/bin/python" -c "import sys; \
from espnet2_mtla.mini.debian_text import translation_files as files; \
print('\n'.join(map(str, files(language=sys.argv[1]))))" "${language}") || exit 1
    for index in ${indices}; do
        name=$(basename "${index}")  # (compressed or not: the name up to the language, .xz)
        /usr/lib/apt/apt-helper cat-file "${index}" | xz -9 -T0 \
            > "${dir}/${name%%_i18n_Translation-*}_i18n_Translation-${language}.xz"
    done
done
downloads=$(mktemp -d)
"${root}/tools/venv/bin/python" -c "import sys; from pathlib import Path; \
from espnet2_mtla.mini.gettext_pairs import fetch_catalogs, MORE_CATALOG_PACKAGES as more; \
fetch_catalogs(Path(sys.argv[1]), more)" "${downloads}"
rm -rf "${dir}/mo_root" "${dir}/mo_root.tar.xz"  # (the .mo files: 9.8 MB, 2.1 MB in xz)
tar -C "${downloads}/root" -cJf "${dir}/mo_root.tar.xz" . && rm -rf "${downloads}"
du -sh "${dir}"
[ "$(du -sb "${dir}" | cut -f1)" -le $(( 60 * 1024 * 1024 )) ] \
    || echo "$0: ${dir} is over 60 MiB: with the working tree it may not fit the device tool's 64 MiB carry" >&2
