#!/usr/bin/env python3
"""Merge the outputs of split decoding jobs (mtla.sh stage 8) into one decode directory.

    python -m espnet2_mtla.bin.merge_decodes --out exp/x/decode_test exp/x/decode_test/logdir/output.*

Concatenates every ``*best_recog/<file>`` (sorted by key) and combines the jobs'
``efficiency.json``: times, utterances and tokens add up (rates recomputed), peak GPU
memory and KV-cache bytes take the maximum, skipped utterances are listed in
``<out>/skipped``. Parts of different runs are never merged: every part must carry the
same run record (model file and its digest, config, decoding options; see
``inference.run_record``), and each part must have decoded, or reported as skipped,
exactly the keys of its key file (no key twice). The merged files are replaced only when
every check passes.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from espnet2_mtla.inference.run_record import file_digest, keys_of, mismatches, run_of
from espnet2_mtla.data.kaldi_files import read_map, write_map


def check_parts(parts):
    """The parts' reports, after checking that they are finished, of one run, and cover
    their key files exactly; ValueError naming the part and what is wrong otherwise."""
    reports = []
    for part in parts:
        if not (part / "efficiency.json").exists():
            raise ValueError(f"{part} has no efficiency.json: the job did not finish "
                             "(see its decode.*.log)")
        report = json.loads((part / "efficiency.json").read_text())
        if "run" not in report:
            raise ValueError(f"{part}/efficiency.json has no run record: written by an "
                             "older version; decode again")
        reports.append(report)
    for part, report in zip(parts[1:], reports[1:]):
        differ = mismatches(reports[0]["run"], report["run"])
        if differ:
            raise ValueError(f"{part} and {parts[0]} come from different runs (they differ "
                             f"in {', '.join(differ)}); decode again (mtla.sh --stage 8)")
    seen = {}
    for part, report in zip(parts, reports):
        decoded = set()
        for text in part.glob("*best_recog/text"):
            decoded |= set(keys_of(text))
        if (part / "skipped").exists():
            decoded |= set(keys_of(part / "skipped"))
        key_file = report["run"].get("key_file")
        if key_file:
            if not Path(key_file).exists() or file_digest(key_file) != report["run"][
                    "key_file_sha256"]:
                raise ValueError(f"{part}: its key file {key_file} is missing or changed "
                                 "since it was decoded; decode again")
            expected = set(keys_of(key_file))
            if decoded != expected:
                missing, extra = sorted(expected - decoded), sorted(decoded - expected)
                raise ValueError(
                    f"{part}: {len(missing)} keys of {key_file} not decoded"
                    + (f" (e.g. {missing[0]})" if missing else "")
                    + f", {len(extra)} keys not in it" + (f" (e.g. {extra[0]})" if extra else ""))
        for key in decoded:
            if key in seen:
                raise ValueError(f"utterance {key} decoded by two parts: {seen[key]} and {part}")
            seen[key] = part
    return reports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("parts", nargs="+")
    args = parser.parse_args(argv)
    out, parts = Path(args.out), [Path(p) for p in args.parts]
    try:
        reports = check_parts(parts)
    except ValueError as error:
        print(f"merge_decodes: {error}", file=sys.stderr)
        return 1
    for stale in [*out.glob("*best_recog"), out / "efficiency.json", out / "skipped"]:
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)
    names = sorted({f.relative_to(p) for p in parts for f in p.glob("*best_recog/*")})
    for name in names:
        merged = {}
        for part in parts:
            if (part / name).exists():
                merged.update(read_map(part / name, allow_empty_values=True)[0])
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        write_map(out / name, merged)
    skipped = {}
    for part in parts:
        if (part / "skipped").exists():
            skipped.update(read_map(part / "skipped", allow_empty_values=True)[0])
    if skipped:
        write_map(out / "skipped", skipped)
    report = dict(reports[0])
    for key in ("utterances", "generated_tokens", "decode_wall_time_s"):
        report[key] = sum(r[key] for r in reports)
    seconds = max(report["decode_wall_time_s"], 1e-9)
    report["utterances_per_s"] = round(report["utterances"] / seconds, 3)
    report["tokens_per_s"] = round(report["generated_tokens"] / seconds, 3)
    report["peak_kv_cache_bytes"] = max(r["peak_kv_cache_bytes"] for r in reports)
    memory = [r["peak_gpu_memory_bytes"] for r in reports]
    report["peak_gpu_memory_bytes"] = max(memory) if "n/a" not in memory else "n/a"
    report["skipped_utterances"] = len(skipped)
    report["jobs"] = len(parts)
    report["run"] = run_of(reports[0]["run"])
    (out / "efficiency.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
