#!/usr/bin/env perl
# Usage: utils/run.pl [--max-jobs-run N] [JOB=1:N] <log-file> <command ...>
# Runs a command locally, as Kaldi's run.pl does: with JOB=1:N, N jobs, each with JOB
# replaced by its index in the log file name and the command; each job's output goes to
# its own log (command and start time first, exit status and time last). Exits non-zero
# if any job failed, naming the failed jobs' logs. --gpu N gives every job N GPUs of its
# own through CUDA_VISIBLE_DEVICES (from the GPUs in CUDA_VISIBLE_DEVICES, else those
# nvidia-smi lists); jobs wait for free GPUs, so no two running jobs share one. Other
# queue options (--mem, --num-threads, --time) are accepted and ignored.
use strict;
use warnings;
use POSIX qw(:sys_wait_h);
use File::Basename qw(dirname);
use File::Path qw(make_path);

my $max_jobs = 0;  # 0: all at once
my $gpus_per_job = 0;
while (@ARGV && $ARGV[0] =~ /^--/) {
    my $option = shift @ARGV;
    if ($option eq "--help" || $option eq "-h") {
        open(my $self, "<", $0) or die; <$self>;
        while (my $line = <$self>) { last unless $line =~ /^#/; $line =~ s/^# ?//; print STDERR $line; }
        exit 0;
    }
    my $value = ($option =~ s/=(.*)$//) ? $1 : shift @ARGV;
    die "run.pl: option $option needs a value\n" unless defined $value;
    $max_jobs = $value if $option eq "--max-jobs-run";
    $gpus_per_job = $value if $option eq "--gpu";
}
my @free_gpus;  # GPU ids not held by a running job
if ($gpus_per_job > 0) {
    if (defined $ENV{CUDA_VISIBLE_DEVICES} && $ENV{CUDA_VISIBLE_DEVICES} ne "") {
        @free_gpus = split /,/, $ENV{CUDA_VISIBLE_DEVICES};
    } else {
        my $count = () = `nvidia-smi -L 2>/dev/null` =~ /^GPU \d+/mg;
        @free_gpus = (0 .. $count - 1);
    }
    die "run.pl: --gpu $gpus_per_job but " . scalar(@free_gpus) . " GPU(s) found "
        . "(CUDA_VISIBLE_DEVICES or nvidia-smi)\n" if @free_gpus < $gpus_per_job;
    my $slots = int(@free_gpus / $gpus_per_job);
    $max_jobs = $slots if $max_jobs == 0 || $max_jobs > $slots;
}
my ($var, $first, $last) = ("", 1, 1);
if (@ARGV && $ARGV[0] =~ /^([A-Za-z_]\w*)=(\d+):(\d+)$/) {
    ($var, $first, $last) = ($1, $2, $3);
    shift @ARGV;
    die "run.pl: empty job range $first:$last\n" if $last < $first;
}
die "usage: run.pl [--max-jobs-run N] [JOB=1:N] <log-file> <command ...>\n" if @ARGV < 2;
my $log_template = shift @ARGV;
my $command_template = join(" ", @ARGV);

my (%log_of, %gpus_of, @failed);
my $running = 0;
for my $job ($first .. $last) {
    my ($log, $command) = ($log_template, $command_template);
    if ($var ne "") { $log =~ s/\b$var\b/$job/g; $command =~ s/\b$var\b/$job/g; }
    make_path(dirname($log));
    if ($max_jobs > 0 && $running >= $max_jobs) { reap(wait()); $running--; }
    my @gpus = splice(@free_gpus, 0, $gpus_per_job);
    my $pid = fork();
    die "run.pl: cannot fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open(my $out, ">", $log) or die "run.pl: cannot write $log: $!\n";
        my $start = time();
        $ENV{CUDA_VISIBLE_DEVICES} = join(",", @gpus) if $gpus_per_job > 0;
        print $out "# $command\n# Started at " . localtime() . "\n";
        print $out "# CUDA_VISIBLE_DEVICES=$ENV{CUDA_VISIBLE_DEVICES}\n" if $gpus_per_job > 0;
        close($out);
        my $status = system("bash", "-c", "( $command ) >>'$log' 2>&1");
        my $code = $status == -1 ? 127 : ($status & 127 ? 128 + ($status & 127) : $status >> 8);
        open($out, ">>", $log) or die;
        printf $out "# Accounting: time=%d threads=1\n# Ended (code %d) at %s\n",
            time() - $start, $code, scalar localtime();
        close($out);
        exit($code == 0 ? 0 : 1);
    }
    $log_of{$pid} = $log;
    $gpus_of{$pid} = [@gpus];
    $running++;
}
while ((my $pid = wait()) > 0) { reap($pid); }

sub reap {
    my ($pid) = @_;
    return if $pid <= 0;
    push @failed, $log_of{$pid} if $? != 0;
    push @free_gpus, @{$gpus_of{$pid}};  # the job's GPUs are free again
}

if (@failed) {
    my $total = $last - $first + 1;
    print STDERR "run.pl: " . scalar(@failed) . " / $total failed, log is in "
        . join(" ", sort @failed) . "\n";
    exit 1;
}
exit 0;
