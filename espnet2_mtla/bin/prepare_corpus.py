#!/usr/bin/env python3
"""Kaldi data dirs from a corpus in its official layout (local/data.sh of egs2/must_c,
ami, slurp, xsum calls this with the path from db.sh).

    python -m espnet2_mtla.bin.prepare_corpus must_c --root /data/MUSTC_v1.0 --out data

When the corpus is not there, or not in its official layout, it says what to download
and where to put it, and exits with status 1.
"""

import argparse
import importlib
import logging
import sys

from espnet2_mtla.corpora import CorpusError

CORPORA = ("must_c", "ami", "slurp", "xsum")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", choices=CORPORA)
    parser.add_argument("--root", required=True, help="the corpus folder (db.sh)")
    parser.add_argument("--out", default="data")
    parser.add_argument("--splits", nargs="+", default=None,
                        help="which splits (default: the module's train/dev/test)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    module = importlib.import_module(f"espnet2_mtla.corpora.{args.corpus}")
    try:
        if not args.root:
            raise CorpusError(module.HOW_TO_GET.format(root="<empty>"))
        if args.splits:
            module.prepare(args.root, args.out, splits=args.splits)
        else:
            module.prepare(args.root, args.out)
    except CorpusError as error:
        print(f"prepare_corpus {args.corpus}: {error}", file=sys.stderr)
        return 1
    logging.info("%s: data dirs written under %s", args.corpus, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
