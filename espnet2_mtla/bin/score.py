#!/usr/bin/env python3
"""Score decoding output against references, per task; write score_*/result.txt.

    python -m espnet2_mtla.bin.score --task asr --ref data/test/text \
        --hyp exp/mtla_s2/decode_test/1best_recog/text --out_dir exp/mtla_s2/decode_test

Both files are Kaldi-style ``key text`` lists. Metrics by task:
- asr: WER and CER (jiwer; CER over the characters of the text, spaces included);
- st: BLEU (sacrebleu corpus BLEU on the detokenised text, its default 13a tokenizer);
- slu: intent accuracy (the first token of the text is the intent label) and WER of the
  rest (the transcript);
- summ: ROUGE-1/2/L F-measure x 100 (rouge-score, with stemming), averaged.
Each metric writes ``<out_dir>/score_<metric>/result.txt``; a summary line per metric is
printed and returned. Keys without a hypothesis are scored as empty hypotheses (and
reported); hypotheses without a reference are an error, and so is a key that occurs twice
in either file. An empty reference counts its hypothesis' words (characters) as
insertions.
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List

import jiwer

from espnet2_mtla.data.kaldi_files import read_map

TASK_METRICS = {"asr": ("wer", "cer"), "st": ("bleu",), "slu": ("intent", "wer"),
                "summ": ("rouge",)}


def _units(text: str, characters: bool) -> int:
    return len(text) if characters else len(text.split())


def _error_rate(refs: List[str], hyps: List[str], characters: bool) -> Dict:
    """WER or CER over every pair: a pair with an empty reference (which jiwer cannot
    align) counts each unit of its hypothesis as an insertion."""
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    if not pairs:
        raise ValueError("no non-empty reference to score")
    empty_refs = [h for r, h in zip(refs, hyps) if not r.strip()]
    extra_insertions = sum(_units(h.strip(), characters) for h in empty_refs)
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    out = jiwer.process_characters(refs, hyps) if characters else jiwer.process_words(refs, hyps)
    insertions = out.insertions + extra_insertions
    errors = out.substitutions + out.deletions + insertions
    total = out.substitutions + out.deletions + out.hits
    name = "CER" if characters else "WER"
    if empty_refs:
        logging.warning(f"{len(empty_refs)} empty references: their {extra_insertions} "
                        f"hypothesis {'characters' if characters else 'words'} count as "
                        "insertions")
    return {name: 100.0 * errors / total, "substitutions": out.substitutions,
            "deletions": out.deletions, "insertions": insertions, "reference_units": total,
            "sentences": len(refs) + len(empty_refs), "empty_references": len(empty_refs)}


def score(task: str, refs: Dict[str, str], hyps: Dict[str, str]) -> Dict[str, Dict]:
    """Scores of ``task`` on the keys of refs (a missing hypothesis counts as empty)."""
    if task not in TASK_METRICS:
        raise ValueError(f"--task must be one of {', '.join(TASK_METRICS)}, got {task!r}")
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise ValueError(f"{len(extra)} hypotheses have no reference, e.g. {extra[0]}")
    keys = sorted(refs, key=str.encode)
    missing = [key for key in keys if key not in hyps]
    if missing:
        logging.warning(f"{len(missing)} references have no hypothesis (scored as empty), "
                        f"e.g. {missing[0]}")
    ref_list = [refs[key] for key in keys]
    hyp_list = [hyps.get(key, "") for key in keys]
    results = {}
    if task == "asr":
        results["wer"] = _error_rate(ref_list, hyp_list, characters=False)
        results["cer"] = _error_rate(ref_list, hyp_list, characters=True)
    elif task == "st":
        import sacrebleu

        bleu = sacrebleu.corpus_bleu(hyp_list, [ref_list])
        results["bleu"] = {"BLEU": bleu.score, "signature": str(bleu), "sentences": len(keys)}
    elif task == "slu":
        ref_intents = [r.split(maxsplit=1)[0] if r.split() else "" for r in ref_list]
        hyp_intents = [h.split(maxsplit=1)[0] if h.split() else "" for h in hyp_list]
        correct = sum(r == h for r, h in zip(ref_intents, hyp_intents))
        results["intent"] = {"accuracy": 100.0 * correct / len(keys), "correct": correct,
                             "sentences": len(keys)}
        rest = lambda text: text.split(maxsplit=1)[1] if len(text.split()) > 1 else ""
        if any(rest(r).strip() for r in ref_list):
            results["wer"] = _error_rate([rest(r) for r in ref_list],
                                         [rest(h) for h in hyp_list], characters=False)
    else:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
        totals = {"ROUGE-1": 0.0, "ROUGE-2": 0.0, "ROUGE-L": 0.0}
        for ref, hyp in zip(ref_list, hyp_list):
            measures = scorer.score(ref, hyp)
            for name, key in (("ROUGE-1", "rouge1"), ("ROUGE-2", "rouge2"), ("ROUGE-L", "rougeL")):
                totals[name] += measures[key].fmeasure
        results["rouge"] = {name: 100.0 * value / len(keys) for name, value in totals.items()}
        results["rouge"]["sentences"] = len(keys)
    return results


def read_unique(path) -> Dict[str, str]:
    """A ``key text`` file in which every key occurs once (a duplicate is an error: which
    line would count is a guess)."""
    entries, problems = read_map(path, allow_empty_values=True)
    duplicates = [problem for problem in problems if "duplicate key" in problem]
    if duplicates:
        raise ValueError(f"{len(duplicates)} duplicate keys: " + "; ".join(duplicates[:3]))
    return entries


def summary(metric: str, values: Dict) -> str:
    main = {"wer": "WER", "cer": "CER", "bleu": "BLEU", "intent": "accuracy"}.get(metric)
    if main is None:
        return " ".join(f"{k} {v:.2f}" for k, v in values.items() if k.startswith("ROUGE"))
    return f"{main} {values[main]:.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(TASK_METRICS))
    parser.add_argument("--ref", required=True, help="reference text (key text)")
    parser.add_argument("--hyp", required=True, help="hypothesis text (key text)")
    parser.add_argument("--out_dir", required=True, help="score_<metric>/ are written here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        refs = read_unique(args.ref)
        hyps = read_unique(args.hyp)
        results = score(args.task, refs, hyps)
    except (ValueError, OSError) as error:  # DataDirError (not UTF-8) included
        print(f"score: {error}", file=sys.stderr)
        return 1
    for metric, values in results.items():
        directory = Path(args.out_dir) / f"score_{metric}"
        directory.mkdir(parents=True, exist_ok=True)
        line = summary(metric, values)
        (directory / "result.txt").write_text(
            f"{line}\n{json.dumps(values, indent=2)}\n", encoding="utf-8")
        print(f"{args.hyp}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
