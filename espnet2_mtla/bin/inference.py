#!/usr/bin/env python3
"""Decode with batched beam search; write ESPnet's output layout and an efficiency report.

    python -m espnet2_mtla.bin.inference --train_config exp/model/config.yaml \
        --model_file exp/model/valid.acc.ave.pth \
        --data_path_and_name_and_type dump/raw/test/wav.scp,speech,sound \
        --output_dir exp/model/decode_test --batch_size 16 --beam_size 5

Outputs: ``<output_dir>/1best_recog/{text,token,score}`` (``<n>best_recog`` for
``--nbest n``), one sorted ``key value`` line per utterance, and
``<output_dir>/efficiency.json``: decoding wall time (data loading excluded),
utterances/s, generated tokens/s, peak GPU memory (torch.cuda.max_memory_allocated,
reset before decoding; "n/a" on CPU), the peak KV-cache bytes, and under "run" what the
output was made from (model and config with digests, options, keys; see
``inference.run_record``).

Decoding options can come from a YAML file (``--config conf/decode.yaml``, keys as the
options' names, e.g. ``beam_size: 10`` and ``ctc_weight: 0.3``); options given on the
command line win over it. ``--ctc_weight w`` > 0 decodes with joint CTC/attention scores
(a model trained with CTC; ESPnet's recipes use 0.3 for ASR).

Before decoding, the model file must fit the config exactly, and every utterance of a
``sound`` input is checked (readable, mono, non-empty, at the frontend's rate):
``--on_bad_audio error`` stops naming them, ``skip`` decodes the others and lists the
skipped keys with the reason in ``<output_dir>/skipped``. An output directory is
emptied before decoding, unless ``--skip_done true`` finds it finished by the same run.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from espnet2.text.token_id_converter import TokenIDConverter
from espnet2.utils.types import str2bool, str2triple_str, str_or_none

from espnet2_mtla.inference.beam_search import BatchBeamSearch
from espnet2_mtla.inference.output_dir import (
    clear_outputs,
    decode_to_dir,
    finished_record,
    write_report,
)
from espnet2_mtla.inference.run_record import decode_record, keys_of
from espnet2_mtla.model.checkpoint import ModelFileError
from espnet2_mtla.tasks.decoder_only import (
    DecoderOnlyTask,
    check_text_inputs,
    expected_sample_rate,
)
from espnet2_mtla.data.audio_check import BadAudioError, check_sound_inputs
from espnet2_mtla.data.kaldi_files import DataDirError, write_map


# the words of the auto|true|false options -> BatchBeamSearch's value (None: its default)
AUTO_OR_BOOL = {"auto": None, "true": True, "false": False}


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=str_or_none, default=None,
                        help="YAML file of decoding options (the command line wins)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--data_path_and_name_and_type", type=str2triple_str,
                        action="append", required=True,
                        help="path,name,type of the input, e.g. wav.scp,speech,sound")
    parser.add_argument("--key_file", type=str_or_none, default=None,
                        help="Decode only these keys (split jobs)")
    parser.add_argument("--train_config", required=True)
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: first GPU")
    parser.add_argument("--dtype", default="float32",
                        choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch_size", type=int, default=1, help="Utterances per batch")
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--beam_size", type=int, default=5)
    parser.add_argument("--nbest", type=int, default=1)
    parser.add_argument("--maxlenratio", type=float, default=0.0,
                        help="Max output length: ratio x prefix length (0: the prefix "
                        "length; < 0: -maxlenratio tokens)")
    parser.add_argument("--minlenratio", type=float, default=0.0)
    parser.add_argument("--length_penalty", type=float, default=1.0,
                        help="Finished scores are divided by length ** length_penalty")
    parser.add_argument("--ctc_weight", type=float, default=0.0,
                        help="Joint CTC/attention decoding: weight of the CTC prefix score "
                        "in [0, 1] (0: attention only; needs a model trained with CTC)")
    parser.add_argument("--pre_beam_ratio", type=float, default=1.5,
                        help="With 0 < ctc_weight < 1, the CTC prefix score is computed for "
                        "the pre_beam_ratio x beam_size best tokens of the decoder")
    parser.add_argument("--share_prefix", default="auto", choices=list(AUTO_OR_BOOL),
                        help="Hold each utterance's prefix once for its beams (auto: where "
                        "the step is graphed, i.e. MLA/MTLA on GPU; true: every attention type)")
    parser.add_argument("--cuda_graphs", default="auto", choices=list(AUTO_OR_BOOL),
                        help="Replay each decoding step from CUDA graphs (auto: on GPU "
                        "for MLA/MTLA, where it pays)")
    parser.add_argument("--on_bad_audio", default="error", choices=["error", "skip"],
                        help="An utterance whose audio cannot be read as the model expects "
                        "(missing, unreadable, empty, not mono, other sample rate): stop "
                        "naming it, or skip it (listed in <output_dir>/skipped)")
    parser.add_argument("--skip_done", type=str2bool, default=False,
                        help="Keep an output_dir finished by the same run (model, config, "
                        "options, keys: efficiency.json's run record) instead of decoding "
                        "again; mtla.sh sets it so that an interrupted stage 8 re-runs only "
                        "the missing jobs")
    parser.add_argument("--log_level", default="INFO",
                        choices=["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"])
    return parser


class DecodingOptionError(ValueError):
    """Decoding options the model cannot be decoded with (e.g. --ctc_weight > 0 for a
    model without a CTC layer)."""


def parse_args(cmd=None):
    """Options from the command line over those of ``--config`` (YAML); checked."""
    parser = get_parser()
    args = parser.parse_args(cmd)
    if args.config is not None:
        import yaml

        try:
            with open(args.config, encoding="utf-8") as handle:
                options = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError) as error:
            parser.error(f"--config {args.config}: {error}")
        if not isinstance(options, dict):
            parser.error(f"--config {args.config}: expected 'option: value' lines")
        settable = {action.dest for action in parser._actions
                    if action.option_strings and not isinstance(action, argparse._AppendAction)}
        settable -= {"config", "help"}
        unknown = sorted(set(options) - settable)
        if unknown:
            parser.error(f"--config {args.config}: unknown option(s) {', '.join(unknown)} "
                         f"(options: {', '.join(sorted(settable))})")
        from_file = []
        for key, value in options.items():
            if isinstance(value, bool):
                value = str(value).lower()
            from_file += [f"--{key}", str(value)]
        args = parser.parse_args(from_file + list(cmd or []))
    if not 0.0 <= args.ctc_weight <= 1.0:
        parser.error(f"--ctc_weight must be in [0, 1], got {args.ctc_weight}")
    if args.pre_beam_ratio < 1.0:
        parser.error(f"--pre_beam_ratio must be >= 1, got {args.pre_beam_ratio}")
    return args


def build_text_converter(train_args):
    """Token ids -> text with the tokenizer the model was trained with."""
    # (imported here, after decoder_only has imported it without nltk downloads)
    from espnet2.text.build_tokenizer import build_tokenizer

    tokenizer = build_tokenizer(train_args.token_type, bpemodel=train_args.bpemodel)
    return tokenizer, TokenIDConverter(token_list=train_args.token_list)


def checked_keys(args, train_args, output_dir: Path):
    """(key file to decode, number of keys to decode, {skipped key: reason}): every input
    checked before decoding."""
    check_text_inputs(args.data_path_and_name_and_type)
    bad = check_sound_inputs(args.data_path_and_name_and_type,
                             expected_sample_rate(train_args),
                             skip=args.on_bad_audio == "skip")
    wanted = keys_of(args.key_file or args.data_path_and_name_and_type[0][0])
    skipped = {key: bad[key] for key in wanted if key in bad}
    if not skipped:
        return args.key_file, len(wanted), {}
    for key, reason in skipped.items():
        logging.warning(f"skipping utterance {key}: {reason}")
    key_file = output_dir / "keys.checked"
    key_file.write_text("".join(f"{key}\n" for key in wanted if key not in skipped))
    write_map(output_dir / "skipped", skipped)
    return str(key_file), len(wanted) - len(skipped), skipped


def inference(args):
    device = "cuda" if args.ngpu > 0 else "cpu"
    if args.ngpu > 0 and not torch.cuda.is_available():
        raise ValueError("--ngpu > 0 but CUDA is not available")
    output_dir = Path(args.output_dir)
    record = decode_record(vars(args))
    if args.skip_done and finished_record(output_dir) == record:
        logging.info(f"{output_dir}: finished by the same run already (model, config, "
                     "options, keys): kept")
        return json.loads((output_dir / "efficiency.json").read_text())
    output_dir.mkdir(parents=True, exist_ok=True)
    clear_outputs(output_dir)
    dtype = getattr(torch, args.dtype)
    model, train_args = DecoderOnlyTask.build_model_from_file(
        args.train_config, args.model_file, device
    )
    model.to(dtype).eval()
    try:  # before the inputs are checked: options that do not fit the model stop at once
        search = BatchBeamSearch(
            model,
            beam_size=args.beam_size,
            maxlenratio=args.maxlenratio,
            minlenratio=args.minlenratio,
            length_penalty=args.length_penalty,
            nbest=args.nbest,
            ctc_weight=args.ctc_weight,
            pre_beam_ratio=args.pre_beam_ratio,
            cuda_graphs=AUTO_OR_BOOL[args.cuda_graphs],
            share_prefix=AUTO_OR_BOOL[args.share_prefix],
        )
    except ValueError as error:
        raise DecodingOptionError(f"{args.train_config}: {error}") from error
    if model.frontend is not None:
        model.frontend.float()  # STFT/filterbanks stay fp32; features are cast after
    key_file, total, skipped = checked_keys(args, train_args, output_dir)

    iterator = DecoderOnlyTask.build_streaming_iterator(
        args.data_path_and_name_and_type,
        dtype="float32",
        batch_size=args.batch_size,
        key_file=key_file,
        num_workers=args.num_workers,
        preprocess_fn=DecoderOnlyTask.build_preprocess_fn(train_args, False),
        collate_fn=DecoderOnlyTask.build_collate_fn(train_args, False),
        allow_variable_data_keys=False,
        inference=True,
    )
    tokenizer, converter = build_text_converter(train_args)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    measured = decode_to_dir(search, iterator, tokenizer, converter, output_dir, total, device)
    return write_report(output_dir, measured, device, {
        "dtype": args.dtype, "attention": train_args.attention,
        "attention_conf": train_args.attention_conf, "beam_size": args.beam_size,
        "batch_size": args.batch_size, "ctc_weight": args.ctc_weight,
        "skipped_utterances": len(skipped), "run": record})


def main(cmd=None):
    args = parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    try:
        inference(args)
    except (ModelFileError, BadAudioError, DataDirError, FileNotFoundError,
            DecodingOptionError) as error:
        logging.error(str(error))
        sys.exit(f"inference: {error}")


if __name__ == "__main__":
    main(sys.argv[1:])
