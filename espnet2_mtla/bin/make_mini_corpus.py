#!/usr/bin/env python3
"""Build an offline mini corpus into Kaldi data dirs data/{train,dev,test}.

    python -m espnet2_mtla.bin.make_mini_corpus asr --out data --num_train 3000

Corpora (see each egs2/mini_*/*/local/README.md):
- asr:  sentences of Debian package descriptions, spoken by espeak-ng;
- st:   English -> German messages of gettext catalogs (and/or package synopses with
        their German translations), the English spoken;
- slu:  spoken commands with SLURP-style scenario_action intents;
- summ: package long description -> synopsis (text only).
Dev and test sentences never occur in training; dev/test voices use espeak-ng variants
never heard in training. The build is deterministic for a seed and the same sources;
it prints the sha256 of data/*/text. Audio already written is kept (resumable).
"""

import argparse
import collections
import logging
import sys
from pathlib import Path

from espnet2_mtla.mini import commands, corpus, debian_text, gettext_pairs, synopsis_pairs


def build_asr(args):
    descriptions = debian_text.load_descriptions(Path(args.apt_lists))
    sentences = debian_text.spoken_sentences(descriptions, args.min_words, args.max_words)
    counts = collections.Counter(w for s in sentences for w in s.split())
    vocabulary = {w for w, _ in counts.most_common(args.vocab_size)}
    kept = [s for s in sentences if all(w in vocabulary for w in s.split())]
    logging.info("%d distinct sentences of %d-%d words, %d within the %d most frequent "
                 "words", len(sentences), args.min_words, args.max_words, len(kept),
                 args.vocab_size)
    splits = corpus.split_items(kept, sizes(args), args.seed)
    corpus.spoken_splits(Path(args.out), splits, text_of=lambda s: s,
                         extras=lambda s: {"text": s}, seed=args.seed,
                         **speech_options(args))


def build_st(args):
    pairs = {}
    if args.st_source in ("catalogs", "both"):
        mo_files = gettext_pairs.fetch_catalogs(Path(args.download_dir),
                                                gettext_pairs.CATALOG_SETS[args.catalogs])
        pairs = gettext_pairs.sentence_pairs(mo_files, args.min_words, args.max_words)
        logging.info("%d English -> German sentence pairs from %d German catalogs",
                     len(pairs), len(mo_files))
    if args.st_source in ("synopses", "both"):
        synopses = synopsis_pairs.synopsis_pairs(Path(args.apt_lists), args.min_words,
                                                 args.max_words)
        new = {e: g for e, g in synopses.items() if e not in pairs}  # a catalog's pair wins
        logging.info("%d English -> German package synopses (Translation-de), %d not "
                     "already a catalog pair", len(synopses), len(new))
        pairs.update(new)
    splits = corpus.split_items(sorted(pairs.items()), sizes(args), args.seed)
    corpus.spoken_splits(Path(args.out), splits, text_of=lambda pair: pair[0],
                         extras=lambda pair: {"text": pair[1], "text.en": pair[0]},
                         seed=args.seed, **speech_options(args))


def build_slu(args):
    chosen = commands.balanced_sample(commands.all_commands(), sum(sizes(args).values()),
                                      args.seed)
    splits = corpus.split_items(chosen, sizes(args), args.seed)
    # SLURP-style text: the intent label, then the transcript
    corpus.spoken_splits(Path(args.out), splits, text_of=lambda item: item[1],
                         extras=lambda item: {"text": f"{item[0]} {item[1]}"},
                         seed=args.seed, **speech_options(args))


def build_summ(args):
    pairs = []
    for description in debian_text.load_descriptions(Path(args.apt_lists)):
        if not description.paragraphs:
            continue
        document = " ".join(description.paragraphs[0].split())
        if (args.min_words <= len(document.split()) <= args.max_words
                and 2 <= len(description.synopsis.split()) <= 16):
            pairs.append((description.package, document, description.synopsis))
    # packages of one source share descriptions: keep the first of each document
    unique = {}
    for package, document, synopsis in pairs:
        unique.setdefault(document, (package, document, synopsis))
    logging.info("%d packages with a first paragraph of %d-%d words (%d distinct)",
                 len(pairs), args.min_words, args.max_words, len(unique))
    splits = corpus.split_items(sorted(unique.values()), sizes(args), args.seed)
    for split, items in splits.items():
        corpus.write_split(Path(args.out) / split, [
            {"key": f"{split}-{index:05d}", "spk": f"{split}-{index:05d}", "text": synopsis,
             "src_text": document} for index, (_, document, synopsis) in enumerate(items)],
            extra_files=["src_text"])


BUILDERS = {"asr": build_asr, "st": build_st, "slu": build_slu, "summ": build_summ}


def speech_options(args):
    """The options of corpus.spoken_splits that say how the audio is made."""
    return {"noise_snr_db": args.noise_snr_db, "jobs": args.jobs,
            "more_voices": args.more_voices,
            "train_voices_per_item": args.train_voices_per_item}


def sizes(args):
    return {"train": args.num_train, "dev": args.num_dev, "test": args.num_test}


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", choices=sorted(BUILDERS))
    parser.add_argument("--out", default="data", help="where data/{train,dev,test} go")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--num_train", type=int, default=3000)
    parser.add_argument("--num_dev", type=int, default=200)
    parser.add_argument("--num_test", type=int, default=200)
    parser.add_argument("--min_words", type=int, default=4,
                        help="sentence length (summ: document length) in words")
    parser.add_argument("--max_words", type=int, default=12)
    parser.add_argument("--vocab_size", type=int, default=1000,
                        help="asr: keep sentences made of the N most frequent words")
    parser.add_argument("--noise_snr_db", type=float, default=None,
                        help="add white noise at this SNR (default: clean)")
    parser.add_argument("--more_voices", action="store_true",
                        help="train also with espeak-ng's named voice variants (Alex, "
                        "Annie, ...; dev/test keep their held-out variants)")
    parser.add_argument("--train_voices_per_item", type=int, default=1,
                        help="speak each training item this many times, each by a "
                        "different voice draw")
    parser.add_argument("--download_dir", default="downloads",
                        help="st: where the Debian packages with German catalogs go")
    parser.add_argument("--catalogs", choices=sorted(gettext_pairs.CATALOG_SETS),
                        default="base", help="st: base (20 packages, 2,345 pairs in bookworm) "
                        "or more (45 packages, desktop applications too: ~8,000 pairs)")
    parser.add_argument("--st_source", choices=["catalogs", "synopses", "both"],
                        default="catalogs", help="st: pairs from the gettext catalogs, from "
                        "Debian's German package synopses matched to the English ones "
                        "(Translation-de; 6,831 plain pairs of 4-12 words in bookworm), or both")
    parser.add_argument("--apt_lists", default=str(debian_text.APT_LISTS))
    parser.add_argument("--jobs", type=int, default=2, help="parallel espeak-ng processes")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        BUILDERS[args.corpus](args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        logging.error("%s", error)
        return 1
    print(f"sha256 of {args.out}/*/text: {corpus.text_digest(Path(args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
