#!/usr/bin/env perl
# Usage: utils/slurm.pl [options] [JOB=1:N] <log-file> <command ...>
# The interface of utils/run.pl on a Slurm cluster: submits the jobs as one array job with
# sbatch and waits for it (sbatch --wait). Each task runs the command with JOB replaced by
# its index and writes its own log (command and start time first, exit status last).
# Exits non-zero if any task failed, naming the failed tasks' logs.
# Options: --gpu N (--gres=gpu:N), --mem M (--mem), --num-threads N (--cpus-per-task),
#          --time T (--time), --max-jobs-run N (array throttle %N),
#          --config FILE (more sbatch options, e.g. --partition=gpu; '#' starts a comment).
# The submitted script is kept next to the log as <log-dir>/q/<log-name>.sh.
use strict;
use warnings;
use File::Basename qw(basename dirname);
use File::Path qw(make_path);
use Cwd qw(getcwd);

my @sbatch;
my $throttle = "";
while (@ARGV && $ARGV[0] =~ /^--/) {
    my $option = shift @ARGV;
    if ($option eq "--help" || $option eq "-h") {
        open(my $self, "<", $0) or die; <$self>;
        while (my $line = <$self>) { last unless $line =~ /^#/; $line =~ s/^# ?//; print STDERR $line; }
        exit 0;
    }
    my $value = ($option =~ s/=(.*)$//) ? $1 : shift @ARGV;
    die "slurm.pl: option $option needs a value\n" unless defined $value;
    if    ($option eq "--gpu")          { push @sbatch, "--gres=gpu:$value" if $value > 0; }
    elsif ($option eq "--mem")          { push @sbatch, "--mem=$value"; }
    elsif ($option eq "--num-threads")  { push @sbatch, "--cpus-per-task=$value"; }
    elsif ($option eq "--time")         { push @sbatch, "--time=$value"; }
    elsif ($option eq "--max-jobs-run") { $throttle = "%$value"; }
    elsif ($option eq "--config") {
        open(my $config, "<", $value) or die "slurm.pl: cannot read --config $value: $!\n";
        while (my $line = <$config>) { $line =~ s/#.*//; push @sbatch, split(' ', $line); }
        close($config);
    }
    else { die "slurm.pl: unknown option $option\n"; }
}
my ($var, $first, $last) = ("", 1, 1);
if (@ARGV && $ARGV[0] =~ /^([A-Za-z_]\w*)=(\d+):(\d+)$/) {
    ($var, $first, $last) = ($1, $2, $3);
    shift @ARGV;
    die "slurm.pl: empty job range $first:$last\n" if $last < $first;
}
die "usage: slurm.pl [options] [JOB=1:N] <log-file> <command ...>\n" if @ARGV < 2;
my $log_template = shift @ARGV;
my $command = join(" ", @ARGV);
my $task_log = $log_template;
if ($var ne "") {
    $task_log =~ s/\b$var\b/\${SLURM_ARRAY_TASK_ID}/g;
    $command =~ s/\b$var\b/\${SLURM_ARRAY_TASK_ID}/g;
}
my $log_dir = dirname($log_template);
make_path("$log_dir/q");
my $name = basename($log_template);
$name =~ s/\b$var\b/JOB/g if $var ne "";
my $script = "$log_dir/q/$name.sh";
my $cwd = getcwd();
open(my $out, ">", $script) or die "slurm.pl: cannot write $script: $!\n";
print $out <<"SCRIPT";
#!/usr/bin/env bash
cd '$cwd'
log="$task_log"
mkdir -p "\$(dirname "\$log")"
echo "# $command" > "\$log"
echo "# Started at \$(date) on \$(hostname)" >> "\$log"
start=\$(date +%s)
( $command ) >> "\$log" 2>&1
code=\$?
echo "# Accounting: time=\$((\$(date +%s) - start)) threads=1" >> "\$log"
echo "# Ended (code \$code) at \$(date)" >> "\$log"
exit \$code
SCRIPT
close($out);
chmod 0755, $script;
my @submit = ("sbatch", "--wait", "--parsable", "--job-name=" . basename($name, ".log"),
              "--output=/dev/null", "--array=$first-$last$throttle", @sbatch, $script);
system(@submit);
my $submitted = $? == 0;

my @failed;
for my $job ($first .. $last) {
    my $log = $log_template;
    $log =~ s/\b$var\b/$job/g if $var ne "";
    my $ok = 0;
    if (open(my $in, "<", $log)) {
        while (my $line = <$in>) { $ok = 1 if $line =~ /^# Ended \(code 0\)/; }
        close($in);
    }
    push @failed, $log unless $ok;
}
if (@failed) {
    my $total = $last - $first + 1;
    print STDERR "slurm.pl: " . scalar(@failed) . " / $total failed"
        . ($submitted ? "" : " (sbatch: @submit failed)") . ", log is in "
        . join(" ", sort @failed) . "\n";
    exit 1;
}
exit 0;
