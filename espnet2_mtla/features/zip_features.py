"""Feature matrices as ``.npy`` members of one uncompressed zip (fairseq S2T's fbank80.zip),
addressed as ``<zip path>:<byte offset>:<byte length>`` of the member's data.

- ``ZipFeatureWriter`` appends members (``ZIP_STORED``, zip64 when large), resumable;
- ``member_locations`` gives each member's data offset and length (from the zip's
  central directory and local headers, as fairseq's manifests record them);
- ``ZipFeatureReader`` reads a listing ``key zip:offset:length`` (ESPnet loader type
  ``zip_npy``), through one memory map per archive and process (re-opened after a
  DataLoader worker forks), and checks every read against the archive's size.
"""

import io
import mmap
import os
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # fixed part of a zip local file header


def parse_location(value: str) -> Tuple[str, int, int]:
    """``path:offset:length`` -> (path, offset, length)."""
    try:
        path, offset, length = value.rsplit(":", 2)
        return path, int(offset), int(length)
    except ValueError:
        raise ValueError(f"{value!r} is not <zip path>:<byte offset>:<byte length>") from None


def member_locations(zip_path) -> Dict[str, Tuple[int, int]]:
    """{member name: (data offset, data length)} of a ZIP_STORED archive."""
    out = {}
    with zipfile.ZipFile(zip_path) as archive, open(zip_path, "rb") as raw:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{zip_path}: member {info.filename} is compressed; "
                                 "feature archives must be stored (ZIP_STORED)")
            raw.seek(info.header_offset)
            header = LOCAL_HEADER.unpack(raw.read(LOCAL_HEADER.size))
            name_length, extra_length = header[9], header[10]
            offset = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
            out[info.filename] = (offset, info.file_size)
    return out


def npy_bytes(matrix: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    return buffer.getvalue()


class ZipFeatureWriter:
    """Append ``<key>.npy`` members to a zip; keys already stored are kept (resume)."""

    def __init__(self, zip_path):
        self.zip_path = Path(zip_path)
        self.zip_path.parent.mkdir(parents=True, exist_ok=True)
        mode = "a" if self.zip_path.exists() else "w"
        self.archive = zipfile.ZipFile(self.zip_path, mode, compression=zipfile.ZIP_STORED,
                                       allowZip64=True)
        self.stored = {name[:-4] for name in self.archive.namelist() if name.endswith(".npy")}

    def __contains__(self, key):
        return key in self.stored

    def write(self, key: str, matrix: np.ndarray):
        self.archive.writestr(f"{key}.npy", npy_bytes(matrix))
        self.stored.add(key)

    def close(self):
        self.archive.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_npy(data: bytes, where: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:
        raise ValueError(f"{where}: not a valid .npy member ({error})") from None


class _Archives:
    """One read-only memory map per archive path and process."""

    def __init__(self):
        self.pid, self.maps = os.getpid(), {}

    def get(self, path: str) -> mmap.mmap:
        if os.getpid() != self.pid:  # a forked DataLoader worker: own handles
            self.pid, self.maps = os.getpid(), {}
        if path not in self.maps:
            with open(path, "rb") as stream:
                self.maps[path] = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        return self.maps[path]


_ARCHIVES = _Archives()


def read_feature(value: str, key: str = "?") -> np.ndarray:
    """The matrix at ``zip:offset:length`` (key names the utterance in errors)."""
    path, offset, length = parse_location(value)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"utterance {key}: archive {path} does not exist")
    data = _ARCHIVES.get(path)
    if offset < 0 or length <= 0 or offset + length > len(data):
        raise ValueError(f"utterance {key}: bytes {offset}..{offset + length} are outside "
                         f"{path} ({len(data)} bytes)")
    return load_npy(data[offset:offset + length], f"utterance {key} ({value})")


class ZipFeatureReader(Mapping):
    """key -> matrix for a listing file of ``key zip:offset:length`` lines. Relative
    archive paths are taken relative to the listing's folder."""

    def __init__(self, listing):
        self.listing, self.locations = str(listing), {}
        base = Path(listing).parent
        with open(listing, encoding="utf-8") as stream:
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                parts = line.split(maxsplit=1)
                if len(parts) != 2:
                    raise ValueError(f"{listing}:{number}: expected 'key zip:offset:length'")
                key, value = parts[0], parts[1].strip()
                path, offset, length = parse_location(value)
                if not os.path.isabs(path):
                    path = str(base / path)
                self.locations[key] = f"{path}:{offset}:{length}"

    def __getitem__(self, key):
        return read_feature(self.locations[key], key)

    def __iter__(self):
        return iter(self.locations)

    def __len__(self):
        return len(self.locations)


def register_espnet_loader():
    """Make ``<listing>,<name>,zip_npy`` a data type of ESPnet's datasets."""
    from espnet2.train.dataset import DATA_TYPES

    DATA_TYPES.setdefault("zip_npy", dict(
        func=ZipFeatureReader, kwargs=[],
        help="Feature matrices in an uncompressed zip (fairseq's fbank80.zip):\n\n"
             "   utterance_id_a fbank80.zip:2048:32128\n   ..."))
