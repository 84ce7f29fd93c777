"""The one place for compatibility shims around installed packages.

- ``import_espnet_preprocessor()``: espnet2.train.preprocessor imports g2p_en (for TTS
  phonemes), which calls ``nltk.download`` at import time. There is no network at run
  time here, so that prints errors (or waits on a network that is not there). We import
  it with nltk's downloader switched off for the duration of the import; phoneme
  tokenizers are not used by this toolkit. ``nltk_downloads_disabled()`` is that switch,
  for other espnet modules that pull in the same dependencies (``bin.tokenize_text``).
"""

import contextlib


@contextlib.contextmanager
def nltk_downloads_disabled():
    try:
        import nltk
    except ImportError:
        yield
        return
    original = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        yield
    finally:
        nltk.download = original


def import_espnet_preprocessor():
    """espnet2.train.preprocessor, imported without nltk download attempts."""
    with nltk_downloads_disabled():
        import espnet2.train.preprocessor as preprocessor
    return preprocessor
