"""The Transformers releases the compressed cache is verified on.

``MTLACache`` plugs into ``generate()``'s cache handling, whose internals change between
Transformers releases (5.24 renamed the cache argument and output field
``past_key_values`` to ``cache``; without following it, ``generate()`` returned tokens
that differ from full recomputation). ``make test`` runs the Transformers tests on each
release in TESTED: the pinned one (tools/requirements.lock) in the main environment, the
newest in a side environment (tools/test_transformers_releases.sh). A release outside
[first, last minor] is refused at import, naming both versions, instead of decoding
wrongly.
"""

from packaging.version import Version

# the releases the test suite runs on: the pinned one and the newest
TESTED = ("5.23.0", "5.24.0")
# accepted: from the first tested release up to the next minor release after the last
SUPPORTED = (Version(TESTED[0]),
             Version(f"{Version(TESTED[-1]).major}.{Version(TESTED[-1]).minor + 1}.0"))


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
            f"MTLA cache is not verified. Install a supported release: pip install "
            f"'transformers{supported_range()}'"
        )
