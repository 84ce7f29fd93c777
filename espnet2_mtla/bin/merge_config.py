#!/usr/bin/env python3
"""Merge YAML configs: later files win key by key (nested mappings merge).

    python -m espnet2_mtla.bin.merge_config base.yaml conf/attention/mtla_s2.yaml -o out.yaml
"""

import argparse
import sys

import yaml


def merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``; mappings merge recursively, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as stream:
        config = yaml.safe_load(stream) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping, got {type(config).__name__}")
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help="YAML files, lowest priority first")
    parser.add_argument("-o", "--output", help="Write here instead of standard output")
    args = parser.parse_args(argv)
    merged = {}
    for path in args.configs:
        merged = merge(merged, load(path))
    text = yaml.safe_dump(merged, sort_keys=False)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as stream:
            stream.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
