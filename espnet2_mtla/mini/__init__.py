"""Offline mini corpora for the egs2/mini_* recipes: real text found on a Debian machine
(package descriptions, gettext catalogs) spoken by the espeak-ng synthesiser.

Everything here is deterministic given the source files and a seed, and needs no network
beyond Debian's package registry (``apt-get update`` / ``apt-get download``)."""
