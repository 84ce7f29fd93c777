"""A decoding job's output directory in ESPnet's layout: ``<n>best_recog/{token,
token_int,score,text}`` (sorted ``key value`` lines) and ``efficiency.json``; the batches
decoded into it with only the search timed; what an earlier run left there (its record,
or cleared)."""

import json
import logging
import shutil
import time
from pathlib import Path

import torch
from espnet2.fileio.datadir_writer import DatadirWriter


def decode_to_dir(search, batches, tokenizer, converter, output_dir: Path, total: int,
                  device: str):
    """Decode ``batches`` ((keys, batch) pairs) with ``search`` into ``output_dir``,
    logging progress about every 10 % of ``total``. Returns (utterances, generated
    tokens, seconds in the search alone (data loading excluded), peak KV-cache bytes)."""
    decode_seconds, utterances, tokens, peak_cache = 0.0, 0, 0, 0
    next_report = 0
    with DatadirWriter(output_dir) as writer:
        for keys, batch in batches:
            batch = {name: value.to(device) for name, value in batch.items()}
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            results, stats = search.search(batch)
            if device == "cuda":
                torch.cuda.synchronize()
            decode_seconds += time.perf_counter() - start
            utterances += len(keys)
            tokens += stats.generated_tokens
            peak_cache = max(peak_cache, stats.peak_cache_bytes)
            for key, nbest in zip(keys, results):
                if not nbest[0].ended:
                    logging.warning(f"utterance {key}: no hypothesis ended within the length "
                                    "limit (--maxlenratio/--minlenratio, or CTC could not "
                                    "align one); its best unfinished hypothesis is written")
                for rank, hyp in enumerate(nbest, start=1):
                    symbols = converter.ids2tokens(hyp.tokens)
                    out = writer[f"{rank}best_recog"]
                    out["token"][key] = " ".join(symbols)
                    out["token_int"][key] = " ".join(map(str, hyp.tokens))
                    out["score"][key] = f"{hyp.score:.6f}"
                    out["text"][key] = tokenizer.tokens2text(symbols)
            if utterances >= next_report or utterances == total:  # about every 10 %
                logging.info(f"decoded {utterances}/{total} utterances "
                             f"({decode_seconds:.1f} s)")
                next_report = utterances + max(1, total // 10)
    sort_outputs(output_dir)
    return utterances, tokens, decode_seconds, peak_cache


def sort_outputs(output_dir: Path):
    """Every output file in key order (C-locale byte order, as Kaldi sorts)."""
    for path in output_dir.glob("*best_recog/*"):
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("".join(line + "\n" for line in sorted(lines)), encoding="utf-8")


def write_report(output_dir: Path, measured, device: str, settings: dict) -> dict:
    """Write ``efficiency.json`` and print it (all but its run record): ``measured`` as
    decode_to_dir returns it, the peak GPU memory (since the last reset), the device, then
    ``settings`` (what was decoded how, and the run record under "run")."""
    utterances, tokens, decode_seconds, peak_cache = measured
    report = {
        "utterances": utterances,
        "generated_tokens": tokens,
        "decode_wall_time_s": round(decode_seconds, 4),
        "utterances_per_s": round(utterances / max(decode_seconds, 1e-9), 3),
        "tokens_per_s": round(tokens / max(decode_seconds, 1e-9), 3),
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else "n/a",
        "peak_kv_cache_bytes": peak_cache,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        **settings,
    }
    (output_dir / "efficiency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_report({k: v for k, v in report.items() if k != "run"}))
    return report


def format_report(report: dict) -> str:
    """``key  value`` lines, keys aligned: the report printed at the end of a job."""
    width = max(len(key) for key in report)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in report.items())


def finished_record(output_dir: Path):
    """The run record of a finished output directory, None if unfinished."""
    try:
        return json.loads((output_dir / "efficiency.json").read_text())["run"]
    except (OSError, ValueError, KeyError):
        return None


def clear_outputs(output_dir: Path):
    """Remove what an earlier run left in ``output_dir`` (its results and report)."""
    for path in output_dir.glob("*best_recog"):
        shutil.rmtree(path)
    for name in ("efficiency.json", "skipped", "keys.checked"):
        (output_dir / name).unlink(missing_ok=True)
