"""The one place for compatibility shims around installed packages.

- ``require_espnet(part)``: the attention modules and the Transformers classes install
  without ESPnet (``pip install espnet2_mtla`` / ``[hf]``); the parts built on ESPnet
  call this first, so a missing stack is named with the extra that installs it.
- ``import_espnet_preprocessor()``: espnet2.train.preprocessor imports g2p_en (for TTS
  phonemes), which calls ``nltk.download`` at import time. There is no network at run
  time here, so that prints errors (or waits on a network that is not there). We import
  it with nltk's downloader switched off for the duration of the import; phoneme
  tokenizers are not used by this toolkit. ``nltk_downloads_disabled()`` is that switch,
  for other espnet modules that pull in the same dependencies (``bin.tokenize_text``).
- ``import_s3prl_nn()``: s3prl 0.4.18 calls ``torchaudio.set_audio_backend("sox_io")`` at
  import (s3prl.dataio), which torchaudio >= 2.9 removed; the pinned torchaudio 2.8 still
  has it (deprecated). Where it is missing, a no-op stands in during the import (the
  backend choice is ignored by torchaudio 2.9+ anyway); s3prl's sox-effect data loading
  is not used by this toolkit.
"""

import contextlib
import importlib.util


def require_espnet(part: str):
    """Raise ModuleNotFoundError naming the [espnet] extra unless espnet is installed."""
    missing = [name for name in ("espnet2", "espnet") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"{part} is built on ESPnet, which is not installed (no module {missing[0]!r}); "
            "install the ESPnet stack with: pip install 'espnet2_mtla[espnet]' (or `make "
            "env` in a checkout). The attention modules and espnet2_mtla.hf do not need it.",
            name=missing[0])


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


def import_s3prl_nn():
    """``s3prl.nn`` (S3PRLUpstream, Featurizer), importable with any torchaudio."""
    import torchaudio

    added = not hasattr(torchaudio, "set_audio_backend")
    if added:
        torchaudio.set_audio_backend = lambda backend: None
    try:
        import s3prl.nn as s3prl_nn
    finally:
        if added:
            del torchaudio.set_audio_backend
    return s3prl_nn
