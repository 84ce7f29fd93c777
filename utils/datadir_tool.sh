#!/usr/bin/env bash
# The Kaldi-named data-directory tools in utils/ are links to this script; the name it is
# called by picks the command of espnet2_mtla/data/datadir_cli.py, which takes the calling
# forms and options of Kaldi's script of that name. It runs from any shell: the Python
# is $PYTHON if set, else the checkout's environment (tools/venv), else python3 (the
# data-directory tools need only the standard library).
case "$(basename "$0")" in
    validate_data_dir.sh) command=validate
        usage="[--no-feats] [--no-text] [--non-print] [--no-wav] [--no-spk-sort] <data-dir>" ;;
    fix_data_dir.sh) command=fix
        usage="[--utt_extra_files 'f1 f2'] [--spk_extra_files 'f1 f2'] <data-dir>   sort, keep utterances present in every file, regenerate spk2utt (originals in <dir>/.backup)" ;;
    copy_data_dir.sh) command=copy
        usage="[--utt-prefix P] [--utt-suffix S] [--spk-prefix P] [--spk-suffix S] [--validate-opts '...'] <srcdir> <destdir>" ;;
    combine_data.sh) command=combine
        usage="[--extra-files 'f1 f2'] [--skip-fix true|false] <dest-data-dir> <src-data-dir1> <src-data-dir2> ...   (a key in two sources is an error)" ;;
    subset_data_dir.sh) command=subset
        usage="[--speakers|--shortest|--first|--last|--per-spk] <srcdir> <num-utt> <destdir>
   or: $0 --utt-list <utt-list-file> <srcdir> <destdir>
   or: $0 --spk-list <spk-list-file> <srcdir> <destdir>" ;;
    perturb_data_dir_speed.sh) command=speed
        usage="<factor> <srcdir> <destdir>   copy with audio <factor> times as fast (keys prefixed sp<factor>-)" ;;
    get_utt2dur.sh) command=utt2dur
        usage="<data-dir>   write utt2dur in seconds (from segments or the audio headers)" ;;
    split_scp.pl) command=split
        usage="[--utt2spk=<utt2spk>] in.scp out1.scp out2.scp ...
   or: $0 -j <num-jobs> <job-id> [--one-based] [--utt2spk=<utt2spk>] in.scp [out.scp]" ;;
    filter_scp.pl) command=filter
        usage="[--exclude] [-f <field>] id_list [in.scp] > out.scp" ;;
    utt2spk_to_spk2utt.pl) command=utt2spk_to_spk2utt usage="[utt2spk] > spk2utt" ;;
    spk2utt_to_utt2spk.pl) command=spk2utt_to_utt2spk usage="[spk2utt] > utt2spk" ;;
    *) echo "$0: call this script through one of its named links in utils/" >&2; exit 1 ;;
esac
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    echo "Usage: $0 ${usage}"; exit 0
fi
root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
python=${PYTHON:-}
if [ -z "${python}" ]; then
    if [ -x "${root}/tools/venv/bin/python" ]; then
        python=${root}/tools/venv/bin/python
    else
        python=python3
    fi
fi
exec "${python}" "${root}/espnet2_mtla/data/datadir_cli.py" "${command}" "$@"
