"""English -> German sentence pairs from the German gettext catalogs (``.mo`` files) of
a fixed list of Debian packages, fetched with ``apt-get download`` (no root needed) so
that the pairs depend on the release, not on what this machine has installed."""

import re
import struct
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

# packages with large German catalogs of user-facing messages (Debian bookworm)
CATALOG_PACKAGES = (
    "apt", "appstream", "bash", "binutils-common", "coreutils", "dpkg", "gettext", "git",
    "gnupg-l10n", "gsettings-desktop-schemas", "krb5-locales", "libc-l10n",
    "libdpkg-perl", "libglib2.0-data", "libgtk2.0-common", "make", "postgresql-15",
    "procps", "tar", "wget",
)
# desktop applications' catalogs: with them bookworm gives ~8,000 pairs instead of 2,345
# (inkscape, gnucash, vlc and gtk's property names the most), enough for a GPU model to
# start translating (2,000 training pairs taught no attention type: mini_en_de's
# RESULTS_gpu.md)
MORE_CATALOG_PACKAGES = CATALOG_PACKAGES + (
    "abiword-common", "evince-common", "evolution-data-server-common",
    "gedit-common", "gimp", "gnome-control-center-data", "gnome-shell-common",
    "gnucash-common", "gnumeric-common", "gtk2-engines", "hexchat-common", "inkscape",
    "kio", "libgtk-3-common", "libkf5kiocore5", "nautilus-data", "pidgin-data",
    "plasma-workspace-data", "rhythmbox-data", "shotwell-common", "thunar-data",
    "totem-common", "transmission-common", "vlc-l10n", "xfce4-panel",
)
CATALOG_SETS = {"base": CATALOG_PACKAGES, "more": MORE_CATALOG_PACKAGES}
LOCALE_DIR = "usr/share/locale/de/LC_MESSAGES"


def fetch_catalogs(download_dir: Path, packages=CATALOG_PACKAGES) -> List[Path]:
    """Download the packages' .deb files (kept when present) and unpack each one's German
    .mo files under ``download_dir/root/<package>/``; returns the .mo paths of
    ``packages``, sorted by file name (the order in which ``sentence_pairs`` lets the
    first translation win). ``root/.unpacked`` lists the packages unpacked there: a root
    that holds every requested package is used as it is, with no .deb files needed, so
    the unpacked catalogs (~9 MB) can be carried to a machine with no network instead of
    the packages (~120 MB)."""
    root = Path(download_dir) / "root"
    marker = root / ".unpacked"  # (a flat root of older versions has .packages)
    unpacked = marker.read_text().split() if marker.exists() else []
    if not set(packages) <= set(unpacked):
        debs = Path(download_dir) / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        missing = [p for p in packages
                   if p not in unpacked and not list(debs.glob(f"{p}_*.deb"))]
        if missing:
            done = subprocess.run(["apt-get", "download", *missing], cwd=debs,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError("apt-get download failed (Debian's package registry must "
                                   f"be reachable, and 'apt-get update' done): "
                                   f"{done.stderr.strip()}")
        for package in packages:
            if package in unpacked:
                continue
            deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
            target = root / package
            target.mkdir(parents=True, exist_ok=True)
            listing = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(target), "--wildcards",
                            f"./{LOCALE_DIR}/*.mo"], input=listing, capture_output=True)
            unpacked.append(package)
        marker.write_text("\n".join(unpacked) + "\n")
    found = [path for package in packages for path in (root / package / LOCALE_DIR).glob("*.mo")]
    return sorted(found, key=lambda path: (path.name, str(path)))


def read_mo(path: Path) -> List[Tuple[str, str]]:
    """(msgid, msgstr) pairs of a GNU .mo file (either byte order)."""
    data = Path(path).read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0x950412DE:
        order = "<"
    elif magic == 0xDE120495:
        order = ">"
    else:
        raise ValueError(f"{path}: not a gettext .mo file")
    _, count, ids_at, strs_at = struct.unpack(order + "4I", data[4:20])

    def string(table, index):
        length, offset = struct.unpack(order + "2I", data[table + 8 * index:table + 8 * index + 8])
        return data[offset:offset + length].decode("utf-8", errors="replace")

    return [(string(ids_at, i), string(strs_at, i)) for i in range(count)]


ENGLISH = re.compile(r"[A-Z][a-z ,']+[.]?")
GERMAN = re.compile(r"[A-Za-zÄÖÜäöüß ,'.-]+")


def sentence_pairs(mo_files, min_words: int, max_words: int) -> Dict[str, str]:
    """Sentence-like entries: a capitalised English message of plain words (no format
    specifiers, plurals, contexts, markup or digits) and a plain German translation.
    The first translation of each English sentence wins (files in sorted order)."""
    pairs = {}
    for path in mo_files:
        for english, german in read_mo(path):
            if not english or not german or "\0" in english or "\x04" in english:
                continue
            if (ENGLISH.fullmatch(english) and GERMAN.fullmatch(german)
                    and min_words <= len(english.split()) <= max_words):
                pairs.setdefault(english, german)
    return pairs
