# Sourced by the bench/ scripts that run recipes on a lent GPU machine (no network, torch
# installed, no espnet): `. bench/gpu_recipe_env.sh <carry dir>` builds the offline
# environment from the carried wheels (once), unpacks espeak-ng from the carried .deb files
# onto PATH (none carried: text-only recipes), puts the carried Debian Translation-en (and
# -de) indices where apt keeps them (make_mini_corpus reads them there) and the carried German catalogs
# where mini_en_de's data preparation looks for them (bench/gpu_carry.sh assembles the carry dir). Sets
# ${root} (this checkout) and ${carry}, and defines copy_epoch_lines and run_sh_option.
carry=$(cd "${1:?usage: . bench/gpu_recipe_env.sh <carry dir>}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -e "${root}/tools/venv/.complete" ] || "${root}/bench/offline_env.sh" "${carry}/wheels"
prefix=${carry}/espeak-root
if compgen -G "${carry}/*.deb" > /dev/null; then
    for deb in "${carry}"/*.deb; do dpkg -x "${deb}" "${prefix}"; done
    export PATH=${prefix}/usr/bin:${PATH}
    export LD_LIBRARY_PATH=${prefix}/usr/lib/x86_64-linux-gnu:${prefix}/usr/lib/x86_64-linux-gnu/pulseaudio:${prefix}/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}
    export ESPEAK_DATA_PATH=${prefix}/usr/lib/x86_64-linux-gnu
    espeak-ng -v en-us --stdout "ready" > /dev/null \
        || { echo "gpu_recipe_env.sh: espeak-ng from ${carry} does not run here:" >&2
             ldd "${prefix}/usr/bin/espeak-ng" "${prefix}"/usr/lib/x86_64-linux-gnu/*.so.? | grep "not found" >&2
             return 1; }
else  # (a carry for text-only recipes, e.g. mini_sum, can leave the speech synthesiser out)
    echo "gpu_recipe_env.sh: no .deb files in ${carry}: no espeak-ng, text-only recipes only" >&2
fi
mkdir -p /var/lib/apt/lists
cp -n "${carry}"/*_i18n_Translation-en* "${carry}"/*_i18n_Translation-de* /var/lib/apt/lists/ \
    2>/dev/null || true
if [ -d "${carry}/mo_root" ]; then  # (unpacked, it put the carry over 64 MiB)
    echo "gpu_recipe_env.sh: ${carry}/mo_root is an older layout (the catalogs now travel as" \
        "mo_root.tar.xz): rebuild the carry with bench/gpu_carry.sh" >&2; return 1
elif [ -f "${carry}/mo_root.tar.xz" ]; then
    catalogs=${root}/egs2/mini_en_de/st1/downloads/root
    rm -rf "${catalogs}"; mkdir -p "${catalogs}"
    tar -C "${catalogs}" -xJf "${carry}/mo_root.tar.xz"
    # (without its .unpacked list, stage 1 would try to download the packages again)
    [ -f "${catalogs}/.unpacked" ] || { echo "gpu_recipe_env.sh: ${carry}/mo_root.tar.xz has no" \
        ".unpacked list: rebuild the carry with bench/gpu_carry.sh" >&2; return 1; }
fi

copy_epoch_lines() {  # copy_epoch_lines <exp dir> <out dir>: espnet's per-epoch summary
    local log      # lines of each <exp dir>/*/train.log to <out dir>/<model>_epochs.log
    for log in "$1"/*/train.log; do
        [ -f "${log}" ] || continue
        grep -E "epoch results" "${log}" \
            > "$2/$(basename "$(dirname "${log}")")_epochs.log" || true
    done
}

run_sh_option() {  # run_sh_option <recipe dir> <name>: the value its run.sh gives --<name>
    grep -m 1 -o -- "--$2 \\(\"[^\"]*\"\\|[^ \"]*\\)" "$1/run.sh" | cut -d' ' -f2- | tr -d '"'
}
