"""The command lines of the Kaldi-named data-directory scripts in utils/:
``datadir_cli.py <command> <Kaldi's arguments>`` with Kaldi's calling forms and options
(``validate_data_dir.sh --no-feats``, ``subset_data_dir.sh --first <src> <n> <dest>``,
``split_scp.pl -j N k``, ``filter_scp.pl -f 2``, ...). utils/datadir_tool.sh runs this
file by path, so it and what it imports need only the standard library.
"""

import shlex
import sys
from pathlib import Path
from typing import Dict, List

if __package__:
    from .datadir import (combine_data, copy_data_dir, fix_data_dir, get_utt2dur,
                          perturb_data_dir_speed, validate_data_dir)
    from .kaldi_files import DataDirError, filter_scp, raw_lines, split_scp
    from .subset import subset_data_dir
else:  # run by path from utils/: standard library only (the package imports torch)
    from datadir import (  # type: ignore[no-redef]
        combine_data, copy_data_dir, fix_data_dir, get_utt2dur, perturb_data_dir_speed,
        validate_data_dir)
    from kaldi_files import DataDirError, filter_scp, raw_lines, split_scp  # type: ignore[no-redef]
    from subset import subset_data_dir  # type: ignore[no-redef]


class UsageError(DataDirError):
    """A command line Kaldi's script would not accept (or an option not supported)."""


def _options(argv, flags=(), valued=(), command=""):
    """Kaldi-style leading options: ``--name value`` or ``--name=value`` for ``valued``,
    ``--name`` (or ``--name true|false``) for ``flags``; dashes and underscores alike.
    Returns ({name: value}, remaining positional arguments)."""
    found, args = {}, list(argv)
    norm = lambda name: name.replace("_", "-")
    flags, valued = {norm(f) for f in flags}, {norm(v) for v in valued}
    while args and args[0].startswith("--"):
        name, equals, value = args.pop(0)[2:].partition("=")
        name = norm(name)
        if name in flags:
            if equals or (args and args[0] in ("true", "false")):
                value = value if equals else args.pop(0)
                if value not in ("true", "false"):
                    raise UsageError(f"{command}: --{name} takes true or false, got {value!r}")
                found[name] = value == "true"
            else:
                found[name] = True
        elif name in valued:
            if not equals:
                if not args:
                    raise UsageError(f"{command}: --{name} needs a value")
                value = args.pop(0)
            found[name] = value
        else:
            known = " ".join(f"--{o}" for o in sorted(flags | valued)) or "none"
            raise UsageError(f"{command}: option --{name} is not supported (supported: {known})")
    return found, args


def _usage(command, usage, args, counts):
    if len(args) not in counts:
        raise UsageError(f"usage: {command} {usage}")


def _print_report(lines) -> int:
    for line in lines:
        print(line, file=sys.stderr)
    return 0


def _cli_validate(argv):
    usage = "[--no-feats] [--no-text] [--non-print] [--no-wav] [--no-spk-sort] <data-dir>"
    options, args = _options(argv, ("no-feats", "no-text", "non-print", "no-wav", "no-spk-sort"),
                             command="validate_data_dir.sh")
    _usage("validate_data_dir.sh", usage, args, (1,))
    return _report_validation(args[0], {k.replace("-", "_"): v for k, v in options.items()})


def _report_validation(directory, flags) -> int:
    problems = validate_data_dir(directory, **flags)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{directory}: not valid; run utils/fix_data_dir.sh {directory}", file=sys.stderr)
        return 1
    print(f"Successfully validated data-directory {directory}", file=sys.stderr)
    return 0


def _cli_fix(argv):
    options, args = _options(argv, valued=("utt-extra-files", "spk-extra-files"),
                             command="fix_data_dir.sh")
    _usage("fix_data_dir.sh", "[--utt_extra_files 'f1 f2'] [--spk_extra_files 'f1 f2'] "
           "<data-dir>", args, (1,))
    return _print_report(fix_data_dir(
        args[0], utt_extra_files=options.get("utt-extra-files", "").split(),
        spk_extra_files=options.get("spk-extra-files", "").split()))


VALIDATE_FLAGS = ("--no-feats", "--no-text", "--non-print", "--no-wav", "--no-spk-sort")


def _cli_copy(argv):
    affixes = ("utt-prefix", "utt-suffix", "spk-prefix", "spk-suffix")
    options, args = _options(argv, valued=(*affixes, "validate-opts"), command="copy_data_dir.sh")
    _usage("copy_data_dir.sh", "[--utt-prefix P] [--utt-suffix S] [--spk-prefix P] "
           "[--spk-suffix S] [--validate-opts '...'] <srcdir> <destdir>", args, (2,))
    source, target = map(Path, args)
    validate_opts = shlex.split(options.get("validate-opts", ""))
    bad = [o for o in validate_opts if o not in VALIDATE_FLAGS]
    if bad:
        raise UsageError(f"copy_data_dir.sh: --validate-opts {bad[0]} is not a "
                         f"validate_data_dir.sh option ({' '.join(VALIDATE_FLAGS)})")
    copy_data_dir(source, target, *(options.get(a, "") for a in affixes))
    # as Kaldi's: a file the source lacks is not required of the copy
    for name, flag in (("feats.scp", "--no-feats"), ("text", "--no-text"), ("wav.scp", "--no-wav")):
        if not (source / name).exists():
            validate_opts.append(flag)
    print(f"copy_data_dir.sh: copied data from {source} to {target}", file=sys.stderr)
    flags = {o[2:].replace("-", "_"): True for o in validate_opts}
    return _report_validation(target, flags)


def _cli_combine(argv):
    options, args = _options(argv, flags=("skip-fix",), valued=("extra-files",),
                             command="combine_data.sh")
    _usage("combine_data.sh", "[--extra-files 'f1 f2'] [--skip-fix true|false] <dest-data-dir> "
           "<src-data-dir1> <src-data-dir2> ...", args, range(2, 1 << 20))
    extra = options.get("extra-files", "").split()
    _print_report(combine_data(args[0], args[1:], extra))
    if not options.get("skip-fix", False):
        _print_report(fix_data_dir(args[0], utt_extra_files=extra))
    return 0


def _cli_subset(argv):
    usage = ("[--speakers|--shortest|--first|--last|--per-spk] <srcdir> <num-utt> <destdir>\n"
             "   or: subset_data_dir.sh --utt-list <utt-list-file> <srcdir> <destdir>\n"
             "   or: subset_data_dir.sh --spk-list <spk-list-file> <srcdir> <destdir>")
    ways = {"--first": "first", "--last": "last", "--shortest": "shortest",
            "--per-spk": "per-spk", "--speakers": "speakers"}
    args = list(argv)
    if args and args[0] in ("--utt-list", "--spk-list"):
        option = args.pop(0)
        _usage("subset_data_dir.sh", usage, args, (3,))
        listed = {"utt_list" if option == "--utt-list" else "spk_list": args[0]}
        report = subset_data_dir(args[1], args[2], **listed)
    else:
        way = "even"
        if args and args[0].startswith("--"):
            if args[0] not in ways:
                raise UsageError(f"subset_data_dir.sh: option {args[0]} is not supported "
                                 f"(supported: {' '.join(ways)} --utt-list --spk-list)")
            way = ways[args.pop(0)]
        _usage("subset_data_dir.sh", usage, args, (3,))
        if not args[1].isdigit():
            raise UsageError(f"subset_data_dir.sh: <num-utt> must be a whole number, got "
                             f"{args[1]!r}; usage: subset_data_dir.sh {usage}")
        report = subset_data_dir(args[0], args[2], int(args[1]), way)
    return _print_report(report)


def _cli_split(argv):
    usage = ("[--utt2spk=<utt2spk>] in.scp out1.scp out2.scp ...\n"
             "   or: split_scp.pl -j <num-jobs> <job-id> [--one-based] [--utt2spk=<utt2spk>] "
             "in.scp [out.scp]")
    args, jobs, job, one_based, utt2spk = list(argv), None, None, False, None
    while args and args[0].startswith("-") and args[0] != "-":
        option = args.pop(0)
        if option == "-j":
            if len(args) < 2 or not args[0].isdigit() or not args[1].isdigit():
                raise UsageError(f"split_scp.pl: -j needs <num-jobs> <job-id>; usage: "
                                 f"split_scp.pl {usage}")
            jobs, job = int(args.pop(0)), int(args.pop(0))
        elif option == "--one-based":
            one_based = True
        elif option.startswith("--utt2spk"):
            utt2spk = option.partition("=")[2] or (args.pop(0) if args else "")
        elif option.startswith("--utt2dur"):
            raise UsageError("split_scp.pl: --utt2dur (parts balanced by duration) is not "
                             "supported; split by --utt2spk or by lines")
        else:
            raise UsageError(f"split_scp.pl: option {option} is not supported (supported: -j "
                             "--one-based --utt2spk)")
    if jobs is None:
        _usage("split_scp.pl", usage, args, range(2, 1 << 20))
        return split_scp(args[0], args[1:], utt2spk) or 0
    _usage("split_scp.pl", usage, args, (1, 2))
    job -= int(one_based)
    if jobs < 1 or not 0 <= job < jobs:
        raise UsageError(f"split_scp.pl: invalid job number/index '-j {jobs} "
                         f"{job + int(one_based)}'{' --one-based' if one_based else ''}")
    outputs = [None] * jobs
    outputs[job] = args[1] if len(args) == 2 else "-"
    return split_scp(args[0], outputs, utt2spk, job) or 0


def _cli_filter(argv):
    usage = "[--exclude] [-f <field>] id_list [in.scp] > out.scp"
    args, exclude, field = list(argv), False, 1
    while args and args[0] in ("--exclude", "-f"):
        if args.pop(0) == "--exclude":
            exclude = True
        else:
            if not args or not args[0].isdigit() or int(args[0]) < 1:
                raise UsageError(f"filter_scp.pl: -f needs a field number >= 1; usage: "
                                 f"filter_scp.pl {usage}")
            field = int(args.pop(0))
    if args and args[0].startswith("-") and args[0] != "-":
        raise UsageError(f"filter_scp.pl: option {args[0]} is not supported (supported: "
                         "--exclude -f)")
    _usage("filter_scp.pl", usage, args, (1, 2))
    kept = filter_scp(args[0], args[1] if len(args) == 2 else None, exclude, field)
    sys.stdout.buffer.writelines(kept)
    return 0


def _cli_utt2spk_to_spk2utt(argv):
    _usage("utt2spk_to_spk2utt.pl", "[utt2spk] > spk2utt", argv, (0, 1))
    speakers: Dict[bytes, List[bytes]] = {}  # in order of first appearance, as Kaldi's
    for number, line in enumerate(raw_lines(argv[0] if argv else None), start=1):
        fields = line.split()
        if len(fields) != 2:
            raise DataDirError(f"{argv[0] if argv else 'stdin'}:{number}: bad line "
                               "(want 'utterance speaker')")
        speakers.setdefault(fields[1], []).append(fields[0])
    sys.stdout.buffer.writelines(b" ".join([s, *u]) + b"\n" for s, u in speakers.items())
    return 0


def _cli_spk2utt_to_utt2spk(argv):
    _usage("spk2utt_to_utt2spk.pl", "[spk2utt] > utt2spk", argv, (0, 1))
    for line in raw_lines(argv[0] if argv else None):
        speaker, *utts = line.split()
        sys.stdout.buffer.writelines(u + b" " + speaker + b"\n" for u in utts)
    return 0


def _cli_speed(argv):
    _usage("perturb_data_dir_speed.sh", "<factor> <srcdir> <destdir>", argv, (3,))
    try:
        factor = float(argv[0])
    except ValueError:
        raise UsageError(f"perturb_data_dir_speed.sh: <factor> must be a number, got {argv[0]!r}")
    return _print_report(perturb_data_dir_speed(argv[1], argv[2], factor))


def _cli_utt2dur(argv):
    _, args = _options(argv, command="get_utt2dur.sh")
    _usage("get_utt2dur.sh", "<data-dir>", args, (1,))
    return _print_report(get_utt2dur(args[0]))


COMMANDS = {
    "validate": _cli_validate, "fix": _cli_fix, "copy": _cli_copy, "combine": _cli_combine,
    "subset": _cli_subset, "split": _cli_split, "filter": _cli_filter,
    "utt2spk_to_spk2utt": _cli_utt2spk_to_spk2utt, "spk2utt_to_utt2spk": _cli_spk2utt_to_utt2spk,
    "speed": _cli_speed, "utt2dur": _cli_utt2dur,
}


def main(argv=None):
    """``datadir_cli.py <command> <Kaldi's arguments>``; utils/datadir_tool.sh calls this."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: datadir_cli.py {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 1
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (DataDirError, OSError) as error:  # usage errors included: exit 1, as Kaldi's
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
