#!/usr/bin/env python3
"""The ``spm_train`` of ESPnet's recipes (asr.sh's stage 5 calls ``utils/spm_train``, which
is in ESPnet's repository, not in its pip package): sentencepiece's trainer, driven by
sentencepiece's own flags (mtla.sh stage 5).

    python -m espnet2_mtla.bin.spm_train --input=train.txt --model_prefix=bpe \\
        --vocab_size=300 --model_type=unigram --character_coverage=1.0
"""

import sys

import sentencepiece


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 0 if argv else 1
    flags = {}
    for arg in argv:  # --name=value each (values may hold spaces: passed as a map)
        name, equals, value = arg.partition("=")
        if not name.startswith("--") or not equals:
            print(f"spm_train: {arg!r} is not --<flag>=<value> (sentencepiece's flags)",
                  file=sys.stderr)
            return 1
        flags[name[2:]] = value
    sentencepiece.SentencePieceTrainer.train(**flags)
    return 0


if __name__ == "__main__":
    sys.exit(main())
