"""``frontend: s3prl`` without network: espnet's S3prlFrontend, checked first.

Configuration as ESPnet users know it::

    frontend: s3prl
    frontend_conf:
        frontend_conf:
            upstream: hubert_local           # s3prl's name; *_local reads a file
            path_or_url: /models/hubert.pt   # required for *_local / *_custom / *_url
        multilayer_feature: true             # learned weighted sum of all layers
        layer: -1                            # or a fixed layer (then no weighted sum)
        fs: 16000

Freeze the upstream with espnet's ``freeze_param: [frontend.upstream]`` (fine-tune it by
leaving that out). Nothing is downloaded: an upstream whose checkpoint would come from the
internet is refused with the local alternative named; a missing or unreadable checkpoint,
or a sample rate other than 16 kHz, is a clear error before s3prl is called.
"""

import os
from typing import Optional, Union

from espnet2_mtla.compat import import_s3prl_nn, nltk_downloads_disabled

with nltk_downloads_disabled():
    from espnet2.asr.frontend.s3prl import S3prlFrontend

# s3prl upstreams computed from the waveform alone (no checkpoint)
DOWNLOAD_FREE = ("fbank", "fbank_no_cmvn", "mel", "mfcc", "linear", "spectrogram",
                 "baseline")
LOCAL_SUFFIXES = ("_local", "_custom")


def check_offline_upstream(upstream: Optional[str], path_or_url: Optional[str]):
    """Raise ValueError unless ``upstream`` runs without network."""
    if not upstream:
        raise ValueError("frontend_conf.frontend_conf.upstream is required (e.g. hubert_local)")
    if upstream in DOWNLOAD_FREE or upstream == "baseline_local":
        return
    if not upstream.endswith(LOCAL_SUFFIXES):
        raise ValueError(
            f"s3prl upstream {upstream!r} downloads its checkpoint, and nothing is downloaded "
            f"here: use {upstream.split('_')[0]}_local with frontend_conf.frontend_conf."
            "path_or_url set to a local checkpoint file (espnet2_mtla.bin.make_ssl_checkpoint "
            f"writes a small random one), or a download-free upstream {DOWNLOAD_FREE}")
    if not path_or_url:
        raise ValueError(f"s3prl upstream {upstream!r} needs frontend_conf.frontend_conf."
                         "path_or_url: the local checkpoint file (.pt) to load")
    if path_or_url.startswith(("http://", "https://")):
        raise ValueError(f"path_or_url {path_or_url!r} is a URL: nothing is downloaded here; "
                         "give a local checkpoint file")
    if not os.path.isfile(path_or_url) or not os.access(path_or_url, os.R_OK):
        raise ValueError(f"s3prl checkpoint {path_or_url!r} (for upstream {upstream!r}) is "
                         "missing or unreadable: expected an s3prl-format .pt file")


class OfflineS3prlFrontend(S3prlFrontend):
    """espnet2's S3prlFrontend after offline checks (see the module docstring)."""

    def __init__(self, fs: Union[int, str] = 16000, frontend_conf: Optional[dict] = None,
                 download_dir: Optional[str] = None, multilayer_feature: bool = False,
                 layer: int = -1):
        frontend_conf = dict(frontend_conf or {})
        if int(fs) != 16000:
            raise ValueError(f"frontend_conf.fs is {fs}: s3prl upstreams expect 16000 Hz "
                             "audio (resample with mtla.sh --fs 16000)")
        check_offline_upstream(frontend_conf.get("upstream"), frontend_conf.get("path_or_url"))
        import_s3prl_nn()
        super().__init__(fs=16000, frontend_conf=frontend_conf, download_dir=download_dir,
                         multilayer_feature=multilayer_feature, layer=layer)
