# How jobs run: utils/run.pl on this machine (the default); on a Slurm cluster set
# cmd_backend=slurm once utils/slurm.pl exists (same interface: JOB=1:N log command).
cmd_backend=local
case "${cmd_backend}" in
    local) train_cmd="utils/run.pl"; decode_cmd="utils/run.pl" ;;
    *) echo "cmd.sh: unknown cmd_backend ${cmd_backend}" >&2; return 1 ;;
esac
export train_cmd decode_cmd
