#!/usr/bin/env bash
# The Kaldi-named data-directory tools in utils/ are links to this script; the name it is
# called by picks the command of espnet2_mtla.utils.datadir (run inside the project's
# Python environment: . tools/activate_python.sh, or set PYTHON).
case "$(basename "$0")" in
    validate_data_dir.sh) command=validate
        usage="[--no-wav] <data-dir>   report problems (sorted files, consistent keys, empty transcripts); exit 1 if any" ;;
    fix_data_dir.sh) command=fix
        usage="<data-dir>   sort files, keep utterances present in every file, regenerate spk2utt, report what was dropped (originals in <dir>/.backup)" ;;
    copy_data_dir.sh) command=copy
        usage="[--utt-prefix P] [--utt-suffix S] [--spk-prefix P] [--spk-suffix S] <src-dir> <dest-dir>" ;;
    combine_data.sh) command=combine
        usage="<dest-dir> <src-dir1> <src-dir2> ...   (a key in two sources is an error)" ;;
    subset_data_dir.sh) command=subset
        usage="(--first N | --last N | --utt-list F | --num N) <src-dir> <dest-dir>" ;;
    perturb_data_dir_speed.sh) command=speed
        usage="<factor> <src-dir> <dest-dir>   copy with audio <factor> times as fast (keys prefixed sp<factor>-)" ;;
    get_utt2dur.sh) command=utt2dur
        usage="<data-dir>   write utt2dur in seconds (from segments or the audio headers)" ;;
    split_scp.pl) command=split
        usage="<scp> <out1> [<out2> ...]   split into consecutive parts of sizes within one line" ;;
    filter_scp.pl) command=filter
        usage="[--exclude] <key-list> <scp>   print the lines of <scp> whose key is (not) in <key-list>" ;;
    utt2spk_to_spk2utt.pl) command=utt2spk_to_spk2utt usage="<utt2spk>   print spk2utt" ;;
    spk2utt_to_utt2spk.pl) command=spk2utt_to_utt2spk usage="<spk2utt>   print utt2spk" ;;
    *) echo "$0: call this script through one of its named links in utils/" >&2; exit 1 ;;
esac
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    echo "Usage: $0 ${usage}"; exit 0
fi
exec "${PYTHON:-python3}" -m espnet2_mtla.utils.datadir "${command}" "$@"
