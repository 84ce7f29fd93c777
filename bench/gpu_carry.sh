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
# The main archive's indices (the text reads no other: debian_text.translation_files),
# recompressed with xz, which apt-helper reads as it reads lz4: 13 + 3.3 MB of lz4 are
# 5.6 + 1.3 MB of xz, and with them the carry stays under the device tool's 64 MiB.
carry_index() {  # carry_index <language> <hint>
    local index found=false
    for index in /var/lib/apt/lists/*_dists_*_main_i18n_Translation-"$1"*; do
        case "${index}" in *-security_*|*-updates_*|*-backports_*) continue ;; esac
        [ -e "${index}" ] || continue
        /usr/lib/apt/apt-helper cat-file "${index}" | xz -9 -T0 > "${dir}/$(basename "${index%.*}").xz"
        found=true
    done
    ${found} || { echo "$0: no Translation-$1 index under /var/lib/apt/lists ($2)" >&2; exit 1; }
}
rm -f "${dir}"/*_i18n_Translation-*
carry_index en "apt-get update first"
carry_index de "tools/install_mini_sources.sh fetches it"
downloads=$(mktemp -d)
"${root}/tools/venv/bin/python" -c "import sys; from pathlib import Path; \
from espnet2_mtla.mini.gettext_pairs import fetch_catalogs, MORE_CATALOG_PACKAGES as more; \
fetch_catalogs(Path(sys.argv[1]), more)" "${downloads}"
rm -rf "${dir}/mo_root" "${dir}/mo_root.tar.xz"  # (the .mo files: 9.8 MB, 2.1 MB in xz)
tar -C "${downloads}/root" -cJf "${dir}/mo_root.tar.xz" . && rm -rf "${downloads}"
du -sh "${dir}"
[ "$(du -sb "${dir}" | cut -f1)" -le $(( 60 * 1024 * 1024 )) ] \
    || echo "$0: ${dir} is over 60 MiB: with the working tree it may not fit the device tool's 64 MiB carry" >&2
