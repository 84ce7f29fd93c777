"""What a decoding job was made from, so that outputs of two runs are never mixed.

Each job of ``mtla.sh`` stage 8 writes this record into its ``efficiency.json``: the
model file and config (paths and content digests), every decoding option, and the keys
it was given. ``merge_decodes`` merges only parts of one run (the same record but for
the job's own keys) that decoded, or reported as skipped, exactly the keys of their
split; a job whose output already carries the record of the run asked for is done.
"""

import hashlib
from pathlib import Path
from typing import Dict, List

from espnet2_mtla.data.kaldi_files import read_map

# options that differ between the jobs of one run, or do not change what is decoded
PER_JOB = ("output_dir", "key_file", "skip_done", "log_level", "num_workers")


def file_digest(path) -> str:
    """sha256 of a file's bytes (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def decode_record(options: Dict) -> Dict:
    """The record of a decoding job from its command-line options (argparse vars)."""
    record = {name: value for name, value in options.items() if name not in PER_JOB}
    record["data_path_and_name_and_type"] = [list(map(str, entry)) for entry in
                                             options["data_path_and_name_and_type"]]
    record["model_file"] = str(Path(options["model_file"]).resolve())
    record["model_sha256"] = file_digest(options["model_file"])
    record["train_config"] = str(Path(options["train_config"]).resolve())
    record["config_sha256"] = file_digest(options["train_config"])
    key_file = options.get("key_file")
    record["key_file"] = str(Path(key_file).resolve()) if key_file else None
    record["key_file_sha256"] = file_digest(key_file) if key_file else None
    return record


def run_of(record: Dict) -> Dict:
    """The part of a job's record that all jobs of one run share."""
    return {name: value for name, value in record.items()
            if name not in ("key_file", "key_file_sha256")}


def mismatches(first: Dict, other: Dict) -> List[str]:
    """Names of the run-wide fields in which two job records differ."""
    a, b = run_of(first), run_of(other)
    return sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))


def keys_of(path) -> List[str]:
    """The keys of a ``key ...`` list (a key file or a data file)."""
    return list(read_map(path, allow_empty_values=True)[0])
