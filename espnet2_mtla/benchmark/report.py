"""Where the benchmark's rows go: printed as they come and appended to
``<out>/<section>.csv``; ``plot`` draws PNGs from those CSVs later (needs matplotlib)."""

import csv
import math
from pathlib import Path


class Report:
    """Rows of each section: printed, and written to ``<out>/<section>.csv``. The CSVs of
    the sections given are started afresh."""

    def __init__(self, out: Path, sections=()):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        for section in sections:
            (self.out / f"{section}.csv").unlink(missing_ok=True)

    def row(self, section: str, row: dict):
        cells = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()]
        print(f"[{section}] " + " ".join(cells), flush=True)
        path = self.out / f"{section}.csv"
        new = not path.exists()
        with open(path, "a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


def plot(out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    decode = out / "decode.csv"
    if decode.exists():
        rows = list(csv.DictReader(open(decode)))
        batches = sorted({int(r["batch"]) for r in rows})
        fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4), squeeze=False)
        for axis, batch in zip(axes[0], batches):
            for index, variant in enumerate(dict.fromkeys(r["variant"] for r in rows)):
                chosen = [r for r in rows if r["variant"] == variant and int(r["batch"]) == batch]
                label = variant  # on the first line drawn for the variant
                for column, style in (("graph_us_per_step", "-"), ("us_per_step", ":")):
                    points = [(int(r["cache_len"]), float(r[column])) for r in chosen
                              if not math.isnan(float(r[column]))]
                    if points:
                        axis.loglog(*zip(*points), style, marker="o", color=f"C{index}",
                                    label=label)
                        label = None
            axis.set_title(f"decode step, batch {batch}\n(solid: GPU time, dotted: eager)",
                           fontsize=9)
            axis.set(xlabel="cache length (tokens)", ylabel="microseconds per step")
            axis.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "decode.png", dpi=120)
    beam = out / "beam.csv"
    if beam.exists():
        first = {}  # per (variant, dtype, beam): the first row (kernels and graphs on)
        for r in csv.DictReader(open(beam)):
            first.setdefault((r["variant"], r["dtype"], r["beam"]), r)
        rows = list(first.values())
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for beam_size in sorted({r["beam"] for r in rows}):
            chosen = [r for r in rows if r["beam"] == beam_size]
            names = [r["variant"] for r in chosen]
            axes[0].bar([f"{n}\nb{beam_size}" for n in names], [float(r["seconds"]) for r in chosen])
            axes[1].bar([f"{n}\nb{beam_size}" for n in names],
                        [float(r["peak_memory_MB"]) for r in chosen])
        axes[0].set(ylabel="seconds", title="batched beam search")
        axes[1].set(ylabel="peak GPU MB", title="batched beam search")
        for axis in axes:
            axis.tick_params(axis="x", labelsize=6, rotation=90)
        fig.tight_layout()
        fig.savefig(out / "beam.png", dpi=120)
