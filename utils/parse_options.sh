#!/usr/bin/env bash
# Source this after setting default values: turns "--name value" (or "--name=value")
# command-line options into shell variables ${name} (dashes become underscores). Only
# variables that already exist may be set; "--config file" sources a file of name=value
# lines first; "--help" prints $help_message and exits. The remaining arguments stay in $@.
while true; do
    [ $# -eq 0 ] && break
    case "$1" in
        --help|-h)
            echo "${help_message:-no help message}" >&2
            exit 0 ;;
        --config)
            [ -f "${2:-}" ] || { echo "$0: --config: cannot read '${2:-}'" >&2; exit 1; }
            # shellcheck disable=SC1090
            . "$2"
            shift 2 ;;
        --*=*)
            _po_name=${1%%=*}; _po_value=${1#*=}
            set -- "$_po_name" "$_po_value" "${@:2}" ;;
        --*)
            _po_name=${1#--}; _po_name=${_po_name//-/_}
            if [ -z "${!_po_name+x}" ]; then
                echo "$0: unknown option $1 (no variable ${_po_name})" >&2; exit 1
            fi
            [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
            case "${!_po_name}" in
                true|false)
                    [ "$2" = true ] || [ "$2" = false ] || {
                        echo "$0: option $1 takes true or false, got '$2'" >&2; exit 1; } ;;
            esac
            printf -v "$_po_name" '%s' "$2"
            shift 2 ;;
        *) break ;;
    esac
done
unset _po_name _po_value
true
