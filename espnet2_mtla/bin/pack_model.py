#!/usr/bin/env python3
"""Pack a trained model into one archive that decodes anywhere (mtla.sh stage 11).

    python -m espnet2_mtla.bin.pack_model --exp_dir exp/mtla_mtla_s2 \
        --model_file valid.acc.ave.pth --out exp/packed/mtla_mtla_s2.tar.gz

The archive is written by espnet's ``pack``, so espnet's ``unpack`` (and the model zoo)
reads it: ``meta.yaml`` names ``train_config`` and ``model_file``, and unpacking makes the
config's paths absolute. It holds ``config.yaml`` (the training config with every file it
names -- BPE model, normalisation statistics, ... -- copied into ``files/`` and the paths
made relative to the archive's root), ``model.pth``, ``tokens.txt``, ``packed.yaml``
(where it came from) and ``README.md`` with the command that decodes with it from the
folder it was extracted into.
"""

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

README = """# {name}

A decoder-only model trained with espnet2-mtla ({attention}). Decode from the folder this
archive was extracted into (or unpack it with espnet's
`espnet2.main_funcs.pack_funcs.unpack`, which returns `train_config` and `model_file`):

    mkdir {name} && tar xzf {name}.tar.gz -C {name} && cd {name}
    python -m espnet2_mtla.bin.inference --train_config config.yaml --model_file model.pth \\
        --data_path_and_name_and_type /path/to/wav.scp,{input_name},{input_type} \\
        --output_dir decode --batch_size 16 --beam_size 5

Packed from `{exp_dir}` (`{model_file}`) on {date}; see packed.yaml.
"""


def rewrite_paths(value, files: dict, root: Path):
    """The config with each string that names an existing file replaced by
    ``files/<name>``; ``files`` collects {archive name: source path}."""
    if isinstance(value, dict):
        return {k: rewrite_paths(v, files, root) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_paths(v, files, root) for v in value]
    if isinstance(value, str) and ("/" in value or "." in value) and Path(value).is_file():
        source = Path(value)
        name = f"files/{source.name}"
        while name in files and files[name] != source.resolve():
            name = f"files/{len(files)}_{source.name}"
        files[name] = source.resolve()
        return name
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_dir", required=True, type=Path)
    parser.add_argument("--model_file", default="valid.acc.ave.pth")
    parser.add_argument("--out", required=True, type=Path, help="<name>.tar.gz")
    args = parser.parse_args(argv)
    config_path, model_path = args.exp_dir / "config.yaml", args.exp_dir / args.model_file
    for path in (config_path, model_path):
        if not path.exists():
            print(f"pack_model: {path} is missing (train first)", file=sys.stderr)
            return 1
    # the weights must fit the config exactly (strict, see model.checkpoint); a trainer
    # checkpoint is packed as its model part
    from espnet2_mtla.model.checkpoint import ModelFileError
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    try:
        model, _ = DecoderOnlyTask.build_model_from_file(config_path, model_path, "cpu")
    except (ModelFileError, OSError) as error:
        print(f"pack_model: {error}", file=sys.stderr)
        return 1
    config = yaml.safe_load(config_path.read_text())
    token_list = config.get("token_list")
    if isinstance(token_list, str):  # a path: inline the tokens as ESPnet configs do
        config["token_list"] = Path(token_list).read_text().split()
    for key in ("config", "output_dir", "train_data_path_and_name_and_type",
                "valid_data_path_and_name_and_type", "train_shape_file", "valid_shape_file"):
        config.pop(key, None)  # training-only paths of this machine
    files = {}
    config = rewrite_paths(config, files, Path.cwd())
    name = args.out.name.removesuffix(".tar.gz")
    speech = config.get("model_conf", {}).get("input_type", "speech") == "speech"
    meta = {"packed_from": str(args.exp_dir.resolve()), "model_file": args.model_file,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": str(torch.__version__),
            "attention": config.get("attention"), "attention_conf": config.get("attention_conf")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.resolve().with_name(f"{name}.partial.tgz")  # (espnet's pack: by suffix)
    with tempfile.TemporaryDirectory() as stage, contextlib.chdir(stage):
        Path("files").mkdir()  # members relative to the archive's root, as the config's paths
        torch.save(model.state_dict(), "model.pth")  # the strictly loaded weights
        Path("config.yaml").write_text(yaml.safe_dump(config))
        Path("tokens.txt").write_text("\n".join(config["token_list"]) + "\n")
        Path("packed.yaml").write_text(yaml.safe_dump(meta))
        Path("README.md").write_text(README.format(
            name=name, attention=config.get("attention"), exp_dir=args.exp_dir,
            model_file=args.model_file, date=meta["date"],
            input_name="speech" if speech else "src_text",
            input_type="sound" if speech else "text"))
        for archive_name, source in sorted(files.items()):
            shutil.copyfile(source, archive_name)
        from espnet2.main_funcs.pack_funcs import pack

        with contextlib.redirect_stdout(sys.stderr):  # its "Generate: <path>" line
            pack(files={"model_file": "model.pth"}, yaml_files={"train_config": "config.yaml"},
                 outpath=partial, option=["tokens.txt", "packed.yaml", "README.md",
                                          *sorted(files)])
    partial.rename(args.out)
    print(f"pack_model: {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
