#!/usr/bin/env python3
"""espnet's ``espnet2.bin.tokenize_text`` (token lists for stage 5), imported without
the nltk download attempts of its TTS dependencies (see espnet2_mtla.compat).

    python -m espnet2_mtla.bin.tokenize_text --token_type char --input text --output tokens.txt
"""

from espnet2_mtla.compat import nltk_downloads_disabled

with nltk_downloads_disabled():
    from espnet2.bin.tokenize_text import main

if __name__ == "__main__":
    main()
