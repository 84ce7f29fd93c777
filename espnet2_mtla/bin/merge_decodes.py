#!/usr/bin/env python3
"""Merge the outputs of split decoding jobs (mtla.sh stage 8) into one decode directory.

    python -m espnet2_mtla.bin.merge_decodes --out exp/x/decode_test exp/x/decode_test/logdir/output.*

Concatenates every ``*best_recog/<file>`` (sorted by key) and combines the jobs'
``efficiency.json``: times, utterances and tokens add up (rates recomputed), peak GPU
memory and KV-cache bytes take the maximum.
"""

import argparse
import json
import sys
from pathlib import Path

from espnet2_mtla.utils.datadir import read_map, write_map


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("parts", nargs="+")
    args = parser.parse_args(argv)
    out, parts = Path(args.out), [Path(p) for p in args.parts]
    for part in parts:
        if not (part / "efficiency.json").exists():
            print(f"merge_decodes: {part} has no efficiency.json: the job did not finish",
                  file=sys.stderr)
            return 1
    names = sorted({f.relative_to(p) for p in parts for f in p.glob("*best_recog/*")})
    for name in names:
        merged = {}
        for part in parts:
            if (part / name).exists():
                merged.update(read_map(part / name, allow_empty_values=True)[0])
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        write_map(out / name, merged)
    reports = [json.loads((p / "efficiency.json").read_text()) for p in parts]
    report = dict(reports[0])
    for key in ("utterances", "generated_tokens", "decode_wall_time_s"):
        report[key] = sum(r[key] for r in reports)
    seconds = max(report["decode_wall_time_s"], 1e-9)
    report["utterances_per_s"] = round(report["utterances"] / seconds, 3)
    report["tokens_per_s"] = round(report["generated_tokens"] / seconds, 3)
    report["peak_kv_cache_bytes"] = max(r["peak_kv_cache_bytes"] for r in reports)
    memory = [r["peak_gpu_memory_bytes"] for r in reports]
    report["peak_gpu_memory_bytes"] = max(memory) if "n/a" not in memory else "n/a"
    report["jobs"] = len(parts)
    (out / "efficiency.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
