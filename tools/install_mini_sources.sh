#!/usr/bin/env bash
# What the offline mini recipes (egs2/mini_*) read, from Debian's package registry:
# the espeak-ng synthesiser, gettext's tools, and the English package descriptions
# (Translation-en; and the German ones, Translation-de, which mini_en_de's
# --st_source synopses pairs with them) under /var/lib/apt/lists. Needs root (or sudo) for apt-get; does
# nothing that is there already.
# --optional: when something cannot be installed, say so and exit 0 (the tests that
# need it skip, saying why) instead of failing.
set -euo pipefail
optional=false
case "${1:-}" in
    --optional) optional=true ;;
    "") ;;
    *) echo "usage: $0 [--optional]" >&2; exit 1 ;;
esac
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
need=()
command -v espeak-ng > /dev/null || need+=(espeak-ng)
command -v msgunfmt > /dev/null || need+=(gettext)
have_translations() {  # have_translations [language]
    compgen -G "/var/lib/apt/lists/*_main_i18n_Translation-${1:-en}*" > /dev/null
}
give_up() {
    echo "install_mini_sources.sh: $*" >&2
    ${optional} && exit 0
    exit 1
}
# apt-get <args>: waits while another apt-get (e.g. `make test` beside `make demo`) holds
# apt's locks, up to APT_LOCK_WAIT seconds (default 600), polling every APT_LOCK_POLL
apt_get() {
    local waited=0 errors status
    errors=$(mktemp)
    while true; do
        status=0
        ${sudo} apt-get "$@" 2> "${errors}" || status=$?
        if [ "${status}" -ne 0 ] && grep -q "Could not get lock" "${errors}" \
                && [ "${waited}" -lt "${APT_LOCK_WAIT:-600}" ]; then
            [ "${waited}" -eq 0 ] && echo "install_mini_sources.sh: another apt-get holds" \
                "apt's lock; waiting for it (up to ${APT_LOCK_WAIT:-600} s)" >&2
            sleep "${APT_LOCK_POLL:-5}"
            waited=$(( waited + ${APT_LOCK_POLL:-5} ))
            continue
        fi
        cat "${errors}" >&2; rm -f "${errors}"
        return "${status}"
    done
}
if [ ${#need[@]} -gt 0 ] || ! have_translations en || ! have_translations de; then
    echo "install_mini_sources.sh: apt-get update (with English and German descriptions)" >&2
    apt_get update -qq -o Acquire::Languages=en,de || give_up "apt-get update failed"
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "install_mini_sources.sh: apt-get install ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt_get install -y -qq "${need[@]}" > /dev/null \
        || give_up "apt-get install ${need[*]} failed"
fi
have_translations en || give_up "no Translation-en index after apt-get update"
have_translations de || echo "install_mini_sources.sh: no Translation-de index after" \
    "apt-get update: mini_en_de's --st_source synopses/both cannot run" >&2
