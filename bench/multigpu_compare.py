#!/usr/bin/env python3
"""Tables of bench/multigpu_check.sh: step losses of 1 vs 2 GPUs (and resumed, and torchrun
launches), the decodes of 2 GPU jobs vs 1 job, training throughput on 1 vs 2 GPUs, and by
attention type (eager and compiled) on 1 GPU.

    python bench/multigpu_compare.py --check_dir exp/check --results <dir>

(run in the recipe folder: the throughput runs' config.yaml name their shape files
relative to it)

Step losses come from espnet's log lines (``--log_interval 1``: ``1epoch:train:3-3batch:
... loss=12.345``, 3 decimals); epoch means and epoch times come from the reporter state
in each run's ``checkpoint.pth`` (full precision). Writes ``step_losses.csv`` and
``throughput.csv`` to --results and prints markdown.
"""

import argparse
import csv
import json
import math
import re
from pathlib import Path

import torch
import yaml

# (espnet sometimes drops the comma before a key: "acc=0.021loss=83.590")
STEP_LINE = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch: .*?(?<![A-Za-z_])loss=([-+0-9.e]+)")

# run folder -> (its log in --results, where epoch 1 ran, where epoch 2 ran); rank 0 logs
TRAINER_RUNS = {
    "gpu1": ("gpu1.log", "1 GPU", "1 GPU"),
    "gpu2_then_1": ("gpu2_then_1.log", "2 GPUs", "1 GPU (resumed)"),
    "gpu1_then_2": ("gpu1_then_2.log", "1 GPU", "2 GPUs (resumed)"),
    "torchrun_1node": ("torchrun_1node.log", "torchrun 1 node x 2 GPUs", None),
    "torchrun_2nodes": ("torchrun_2nodes.node0.log", "torchrun 2 nodes x 1 GPU", None),
    "torchrun_per_gpu": ("torchrun_per_gpu.log", "torchrun 1 process per GPU", None),
}


def step_losses(log_file):
    """{(epoch, step): loss} from espnet's per-step log lines (for a resumed run the later lines win)."""
    losses = {}
    for line in Path(log_file).read_text(errors="replace").splitlines():
        match = STEP_LINE.search(line)
        if match and match.group(2) == match.group(3):
            losses[(int(match.group(1)), int(match.group(2)))] = float(match.group(4))
    return losses


def reporter_stats(run_dir):
    """espnet's reporter stats of a run: {epoch: {"train": {...}, "valid": {...}}}."""
    path = Path(run_dir) / "checkpoint.pth"
    if not path.exists():
        return {}
    return torch.load(path, map_location="cpu", weights_only=False)["reporter"]["stats"]


def phase_seconds(stats, epoch, phase):
    """Wall seconds of one epoch's train or valid phase (espnet's reporter), as text."""
    elapsed = stats.get(epoch, {}).get(phase, {}).get("time")
    return f"{elapsed.total_seconds():.1f}" if elapsed is not None else ""


def relative_difference(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def compare_trainer_runs(check_dir, results, lines):
    runs = {name: step_losses(results / log) for name, (log, *_) in TRAINER_RUNS.items()
            if (results / log).exists()}
    if "gpu1" not in runs:
        return
    reference = runs["gpu1"]
    names = list(runs)
    with open(results / "step_losses.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["epoch", "step", *names])
        for key in sorted(reference):
            writer.writerow([*key, *(runs[name].get(key, "") for name in names)])

    lines += ["## espnet's trainer: step losses against the 1-GPU run (same global batch, "
              "fp32, no dropout)", "",
              "| run | epoch | ran on | steps compared | max rel. diff of step loss | "
              "epoch mean loss | 1-GPU epoch mean | rel. diff | train s | valid s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    reference_stats = reporter_stats(check_dir / "gpu1")
    for name, losses in runs.items():
        stats = reporter_stats(check_dir / name)
        for epoch, where in enumerate(TRAINER_RUNS[name][1:], start=1):
            if where is None:
                continue
            keys = [key for key in reference if key[0] == epoch and key in losses]
            if not keys:
                lines.append(f"| {name} | {epoch} | {where} | 0 | (no steps logged) "
                             "| | | | | |")
                continue
            worst = max(relative_difference(losses[k], reference[k]) for k in keys)
            mean = float(stats.get(epoch, {}).get("train", {}).get("loss", math.nan))
            ref_mean = float(reference_stats.get(epoch, {}).get("train", {}).get("loss",
                                                                                 math.nan))
            means = (f"{mean:.6f} | {ref_mean:.6f} | "
                     f"{relative_difference(mean, ref_mean):.2e}") if stats else "| |"
            lines.append(f"| {name} | {epoch} | {where} | {len(keys)} | {worst:.2e} | "
                         f"{means} | "
                         f"{phase_seconds(stats, epoch, 'train')} | "
                         f"{phase_seconds(stats, epoch, 'valid')} |")
    lines.append("")


def read_table(path):
    return dict(line.split(maxsplit=1) if " " in line else (line, "")
                for line in Path(path).read_text().splitlines())


def compare_decodes(check_dir, lines):
    two, one = check_dir / "decode_nj2", check_dir / "decode_nj1"
    if not (two / "1best_recog/text").exists() or not (one / "1best_recog/text").exists():
        return
    text_two, text_one = read_table(two / "1best_recog/text"), read_table(one / "1best_recog/text")
    score_two = {k: float(v) for k, v in read_table(two / "1best_recog/score").items()}
    score_one = {k: float(v) for k, v in read_table(one / "1best_recog/score").items()}
    same = sum(text_two[k] == text_one.get(k) for k in text_two)
    worst = max(abs(score_two[k] - score_one[k]) for k in score_two)
    lines += ["## mtla.sh decoding: 2 jobs on 2 GPUs vs 1 job (merged outputs)", "",
              f"- utterances: {len(text_two)} (2 jobs) / {len(text_one)} (1 job); identical "
              f"1-best text: {same}; keys in the same order: "
              f"{list(text_two) == list(text_one)}; max |score difference|: {worst:.3e}"]
    for jobs, folder in ((2, two), (1, one)):
        for log in sorted((folder / "logdir").glob("decode.*.log")):
            gpus = re.findall(r"CUDA_VISIBLE_DEVICES=(\S+)", log.read_text())
            lines.append(f"- {jobs} job(s): {log.name} ran with CUDA_VISIBLE_DEVICES="
                         f"{gpus[0] if gpus else 'unset'}")
        for result in folder.glob("score_*/result.txt"):
            lines.append(f"- {jobs} job(s) {result.parent.name}: "
                         f"{result.read_text().strip().splitlines()[0]}")
        for efficiency in sorted((folder / "logdir").glob("output.*/efficiency.json")):
            report = json.loads(efficiency.read_text())
            lines.append(f"- {jobs} job(s) {efficiency.parent.name}: {report.get('utterances')} "
                         f"utterances, {report.get('decode_wall_time_s', 0):.2f} s, device "
                         f"{report.get('device', '?')}, peak GPU memory "
                         f"{report.get('peak_gpu_memory_bytes')}")
    lines.append("")


def utterances_per_epoch(run_dir):
    """Training utterances one epoch of a throughput run saw, from its config.yaml:
    espnet's sorted sampler cuts n utterances into max(n // batch_size, 1) equal batches,
    and --num_iters_per_epoch (if set) takes that many of them per epoch."""
    config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    utterances = len(Path(config["train_shape_file"][0]).read_text().splitlines())
    batches = max(utterances // config["batch_size"], 1)
    steps = config["num_iters_per_epoch"] or batches
    return config["batch_size"], steps * utterances / batches


def compare_throughput(check_dir, results, lines):
    """Utterances/s of paper_b<batch>_gpu<n> runs, by batch then GPUs; epoch 1 (CUDA and
    cuDNN warm-up in a new process) left out of the ratio."""
    runs = sorted(check_dir.glob("paper_b*_gpu*"),
                  key=lambda run: [int(part) for part in run.name[len("paper_b"):].split("_gpu")])
    if not runs:
        return
    lines += ["## Training throughput, paper-sized MTLA s=2 (espnet's trainer, AMP)", "",
              "| global batch | GPUs | epoch | utterances | train time (s) | utterances/s |",
              "|---|---|---|---|---|---|"]
    speeds = {}  # batch -> gpus -> epoch -> utterances/s
    with open(results / "throughput.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["global_batch", "gpus", "epoch", "utterances", "train_seconds",
                         "utterances_per_s"])
        for run in runs:
            gpus = int(run.name.rpartition("_gpu")[2])
            batch, utterances = utterances_per_epoch(run)
            for epoch, stats in sorted(reporter_stats(run).items()):
                seconds = stats["train"]["time"].total_seconds()
                speed = utterances / seconds
                speeds.setdefault(batch, {}).setdefault(gpus, {})[epoch] = speed
                writer.writerow([batch, gpus, epoch, f"{utterances:.0f}", f"{seconds:.3f}",
                                 f"{speed:.1f}"])
                lines.append(f"| {batch} | {gpus} | {epoch} | {utterances:.0f} | "
                             f"{seconds:.2f} | {speed:.1f} |")
    lines.append("")
    for batch, per_gpus in sorted(speeds.items()):
        if len(per_gpus) != 2:
            continue
        (one, speeds_one), (two, speeds_two) = sorted(per_gpus.items())
        later = [e for e in speeds_one if e > 1 and e in speeds_two]
        if later:
            mean_one = sum(speeds_one[e] for e in later) / len(later)
            mean_two = sum(speeds_two[e] for e in later) / len(later)
            lines.append(f"- global batch {batch}, epochs {later[0]}-{later[-1]}: "
                         f"{mean_one:.1f} utterances/s on {one} GPU, {mean_two:.1f} on {two}: "
                         f"{mean_two / mean_one:.2f}x")
    lines.append("")


def compare_variants(check_dir, results, lines):
    """Utterances/s of variant_<attention>_compile<bool>_b<batch> runs (1 GPU), mean of
    the epochs after the first, and the ratio of MHA's to each (same compile and batch)."""
    runs = sorted(check_dir.glob("variant_*_compile*_b*"))
    speeds = {}  # (variant, compiled, batch) -> mean utterances/s of epochs > 1
    for run in runs:
        name, _, batch = run.name[len("variant_"):].rpartition("_b")
        variant, _, compiled = name.rpartition("_compile")
        _, utterances = utterances_per_epoch(run)
        later = [stats["train"]["time"].total_seconds()
                 for epoch, stats in reporter_stats(run).items() if epoch > 1]
        if later:
            speeds[(variant, compiled, int(batch))] = utterances / (sum(later) / len(later))
    if not speeds:
        return
    lines += ["## Training throughput by attention type, paper-sized model, 1 GPU "
              "(espnet's trainer, AMP; epochs after the first)", "",
              "| variant | decoder compiled | batch | utterances/s | MHA's speed / this |",
              "|---|---|---|---|---|"]
    with open(results / "variants.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["variant", "compiled", "batch", "utterances_per_s", "step_ratio_to_mha"])
        for (variant, compiled, batch), speed in sorted(speeds.items()):
            mha = speeds.get(("mha", compiled, batch))
            ratio = f"{mha / speed:.2f}" if mha else ""
            writer.writerow([variant, compiled, batch, f"{speed:.1f}", ratio])
            lines.append(f"| {variant} | {compiled} | {batch} | {speed:.1f} | {ratio} |")
    lines.append("")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check_dir", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True)
    args = parser.parse_args()
    lines = ["# Multi-GPU check (bench/multigpu_check.sh)", ""]
    compare_trainer_runs(args.check_dir, args.results, lines)
    compare_decodes(args.check_dir, lines)
    compare_throughput(args.check_dir, args.results, lines)
    compare_variants(args.check_dir, args.results, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
