"""The Transformers releases the compressed cache is known to be correct on.

``MTLACache`` plugs into ``generate()``'s cache handling, whose internals change between
Transformers releases: on 5.24.0, ``generate()`` with ``MTLACache`` returns tokens that
differ from full recomputation from about the third new token on (measured, greedy and
beam, every down_rate), while 5.23.0 agrees. A release outside the range below is
therefore refused at import, naming both versions, instead of decoding wrongly.
"""

from packaging.version import Version

# the releases the test suite runs the generate()/cache tests on: [lowest, first refused)
SUPPORTED = (Version("5.23.0"), Version("5.24.0"))


def supported_range() -> str:
    low, high = SUPPORTED
    return f">={low},<{high}"


def check_transformers_version(installed: str):
    """Raise ImportError unless ``installed`` lies in the supported range."""
    low, high = SUPPORTED
    if not low <= Version(installed) < high:
        raise ImportError(
            f"espnet2_mtla.hf supports transformers {supported_range()}, but transformers "
            f"{installed} is installed: on other releases generate() with the compressed "
            f"MTLA cache is not verified (on 5.24.0 it returns wrong tokens). Install a "
            f"supported release: pip install 'transformers{supported_range()}'"
        )
