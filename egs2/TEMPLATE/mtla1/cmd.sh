# How jobs run: utils/run.pl on this machine (the default), or utils/slurm.pl on a Slurm
# cluster (cmd_backend=slurm; same interface: [JOB=1:N] <log> <command>, plus queue
# options such as --gpu 1). Site options (partition, account, ...) go into
# conf/slurm.conf, one or more sbatch options per line. Set cmd_backend in the
# environment or edit it here.
cmd_backend=${cmd_backend:-local}
case "${cmd_backend}" in
    local) train_cmd="utils/run.pl"; decode_cmd="utils/run.pl" ;;
    slurm)
        slurm_config=""
        [ -f conf/slurm.conf ] && slurm_config="--config conf/slurm.conf"
        train_cmd="utils/slurm.pl ${slurm_config} --mem 16G"
        decode_cmd="utils/slurm.pl ${slurm_config} --mem 8G" ;;
    *) echo "cmd.sh: unknown cmd_backend ${cmd_backend} (local or slurm)" >&2; return 1 ;;
esac
export train_cmd decode_cmd
