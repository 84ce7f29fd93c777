#!/usr/bin/env python3
"""Collect a sweep's scores and efficiency reports into RESULTS.md and a plot.

    python -m espnet2_mtla.bin.collect_results --out RESULTS.md exp/mtla_mha exp/mtla_mtla_s2

Each experiment directory holds ``decode_<test set>/`` with ``score_*/result.txt`` and
``efficiency.json`` (written by mtla.sh stages 8-9) and a model file for the parameter
count. One row per experiment and test set: quality, the training cost (epochs run and the
best one by validation accuracy, optimizer steps and training minutes in all and up to
the best epoch; from espnet's ``checkpoint.pth``), decoding time, peak GPU memory,
KV-cache bytes, parameters. The plot (``<out>.png``) shows KV-cache MB and decoding
seconds per experiment.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from espnet2_mtla.model.checkpoint import model_state


def parameter_count(exp: Path):
    for name in ("valid.acc.ave.pth", "valid.loss.ave.pth", "latest.pth"):
        path = exp / name
        if path.exists():
            state = model_state(path)
            return sum(v.numel() for v in state.values())
    return None


def seconds(value) -> float:
    """An epoch time of espnet's reporter (a timedelta, or seconds) in seconds."""
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


def training_cost(exp: Path) -> dict:
    """Epochs (best by valid acc), optimizer steps and minutes of training in all and up
    to the best epoch (the cost to converge: later epochs only confirmed the plateau),
    from the reporter state espnet's trainer keeps in checkpoint.pth; n/a when it is gone."""
    unknown = dict(epochs="n/a", train_steps="n/a", train_min="n/a", best_steps="n/a",
                   best_min="n/a")
    path = exp / "checkpoint.pth"
    if not path.exists():
        return unknown
    try:
        stats = torch.load(path, map_location="cpu", weights_only=False)["reporter"]["stats"]
    except (RuntimeError, KeyError, OSError, EOFError) as error:
        print(f"collect_results: {path}: no training statistics ({error})", file=sys.stderr)
        return unknown
    epochs = sorted(stats)
    accuracy = {epoch: stats[epoch].get("valid", {}).get("acc") for epoch in epochs}
    scored = [epoch for epoch in epochs if accuracy[epoch] is not None]
    best = max(scored, key=lambda epoch: accuracy[epoch]) if scored else None
    def minutes(upto):
        return round(sum(seconds(stats[e]["train"]["time"]) for e in epochs if e <= upto) / 60, 1)

    def steps(epoch):  # total_count: optimizer steps since the start, at the epoch's end
        return int(stats[epoch]["train"]["total_count"])

    return dict(epochs=f"{len(epochs)} (best {best})" if best else str(len(epochs)),
                train_steps=steps(epochs[-1]), train_min=minutes(epochs[-1]),
                best_steps=steps(best) if best else "n/a",
                best_min=minutes(best) if best else "n/a")


def machine() -> str:
    """CPU model and count, GPU if any, Python and torch versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu} x {os.cpu_count()} cores, {gpu}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def rows(experiments):
    for exp in map(Path, experiments):
        params = parameter_count(exp)
        cost = training_cost(exp)
        for decode in sorted(exp.glob("decode_*")):
            report = json.loads((decode / "efficiency.json").read_text())
            scores = {}
            for result in sorted(decode.glob("score_*/result.txt")):
                scores[result.parent.name[len("score_"):]] = result.read_text().splitlines()[0]
            yield dict(experiment=exp.name, test_set=decode.name[len("decode_"):],
                       quality="; ".join(scores.values()) or "n/a",
                       **cost,
                       decode_s=report["decode_wall_time_s"],
                       peak_gpu_MB=(report["peak_gpu_memory_bytes"] / 1e6
                                    if isinstance(report["peak_gpu_memory_bytes"], (int, float))
                                    else "n/a"),
                       kv_cache_MB=report["peak_kv_cache_bytes"] / 1e6,
                       params_M=params / 1e6 if params else "n/a",
                       device=report.get("device", "n/a"))


def fmt(value):
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="RESULTS.md")
    parser.add_argument("experiments", nargs="+")
    args = parser.parse_args(argv)
    table = list(rows(args.experiments))
    if not table:
        print("collect_results: no decode_*/efficiency.json found", file=sys.stderr)
        return 1
    header = list(table[0])
    lines = ["# Results", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(row[k]) for k in header) + " |" for row in table]
    lines += ["", f"Collected on {machine()}, {time.strftime('%Y-%m-%d')} (the device column "
              "says where each test set was decoded)."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 0
    labels = [f"{row['experiment']}\n{row['test_set']}" for row in table]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].bar(labels, [row["kv_cache_MB"] for row in table])
    axes[0].set(ylabel="peak KV cache (MB)")
    axes[1].bar(labels, [row["decode_s"] for row in table])
    axes[1].set(ylabel="decoding time (s)")
    for axis in axes:
        axis.tick_params(axis="x", labelsize=7, rotation=45)
    fig.tight_layout()
    fig.savefig(str(Path(args.out).with_suffix(".png")), dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
