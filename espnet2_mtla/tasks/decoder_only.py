"""DecoderOnlyTask: the ESPnet2 task of the decoder-only speech/text model.

Everything but the decoder stack, the attention family and the model comes from
espnet2: config and argparse, trainer (DDP, AMP, resume, n-best averaging), iterators,
``ESPnetDataset`` (``sound``, ``kaldi_ark``, ``text_int`` ...), ``CommonPreprocessor``
(sentencepiece / char tokenizers), frontends, normalisation, SpecAugment, encoders.

Data names: ``text`` (target, required for training), ``speech`` (input_type speech) or
``src_text`` (input_type text), optional ``prompt`` (task tokens per utterance).
"""

# first: several espnet2 modules import espnet2.train.preprocessor (see compat.py)
from espnet2_mtla.compat import import_espnet_preprocessor

CommonPreprocessor = import_espnet_preprocessor().CommonPreprocessor

import argparse  # noqa: E402
import difflib  # noqa: E402
import inspect  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Dict, Optional, Tuple

import humanfriendly
import numpy as np
import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
from espnet2.asr.encoder.linear_encoder import LinearEncoder
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.asr.specaug.specaug import SpecAug
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.layers.utterance_mvn import UtteranceMVN
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import int_or_none, str2bool, str_or_none

from espnet2_mtla.attention.choices import attention_choices
from espnet2_mtla.features.global_cmvn import GlobalCMVN
from espnet2_mtla.features.zip_features import register_espnet_loader
from espnet2_mtla.frontend.kaldi_fbank import KaldiFbankFrontend
from espnet2_mtla.frontend.s3prl import OfflineS3prlFrontend
from espnet2_mtla.model.checkpoint import ModelFileError, load_model_state, read_checkpoint
from espnet2_mtla.model.decoder import DecoderOnlyStack
from espnet2_mtla.model.espnet_model import ESPnetDecoderOnlyModel
from espnet2_mtla.data.audio_check import check_sound_inputs
from espnet2_mtla.data.kaldi_files import DataDirError, read_map
from espnet2_mtla.tasks.launch_checks import (
    check_gpu_launch,
    fork_data_loader_workers,
    keep_experiment_config,
)

register_espnet_loader()  # data type zip_npy: fbank80.zip features
frontend_choices = ClassChoices(
    "frontend",
    classes=dict(default=DefaultFrontend, s3prl=OfflineS3prlFrontend,
                 kaldi_fbank=KaldiFbankFrontend),
    type_check=AbsFrontend,
    default="default",
)
specaug_choices = ClassChoices(
    "specaug", classes=dict(specaug=SpecAug), type_check=AbsSpecAug, default=None, optional=True
)
normalize_choices = ClassChoices(
    "normalize",
    classes=dict(global_mvn=GlobalCMVN, utterance_mvn=UtteranceMVN),
    type_check=AbsNormalize,
    default="utterance_mvn",
    optional=True,
)
encoder_choices = ClassChoices(
    "encoder",
    classes=dict(
        transformer=TransformerEncoder,
        conformer=ConformerEncoder,
        e_branchformer=EBranchformerEncoder,
        linear=LinearEncoder,  # input_layer conv2d (subsampling) or linear only
    ),
    type_check=AbsEncoder,
    default="conformer",
)
decoder_choices = ClassChoices(
    "decoder", classes=dict(decoder_only=DecoderOnlyStack), default="decoder_only"
)


def construct(cls, option: str, conf: Dict, **given):
    """``cls(**given, **conf)`` where ``conf`` comes from the YAML key ``option``: a key
    that ``cls`` does not take is an error naming the option, the key and the keys it
    takes (instead of Python's TypeError about a keyword argument)."""
    parameters = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = [name for name in parameters if name not in ("self", *given)
                and parameters[name].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                  inspect.Parameter.VAR_KEYWORD)]
    unknown = sorted(set(conf) - set(accepted))
    if unknown and not takes_any:
        close = {key: difflib.get_close_matches(key, accepted, n=1) for key in unknown}
        hints = ", ".join(f"{key!r}" + (f" (did you mean {close[key][0]!r}?)" if close[key]
                                        else "") for key in unknown)
        raise ValueError(f"{option}: unknown key(s) {hints} for {cls.__name__}; it takes: "
                         f"{', '.join(accepted)}")
    return cls(**given, **conf)


class DecoderOnlyPreprocessor(CommonPreprocessor):
    """CommonPreprocessor, plus ``src_text`` tokenised like ``text``, ``prompt`` symbols
    mapped to ids, and a clear error for an empty transcript."""

    def __call__(self, uid: str, data: Dict) -> Dict[str, np.ndarray]:
        prompt = data.pop("prompt", None)  # CommonPreprocessor reserves "prompt" (Whisper)
        source = data.pop("src_text", None)
        data = super().__call__(uid, data)
        if "text" in data and len(data["text"]) == 0:
            raise ValueError(f"utterance {uid}: empty transcript in 'text'")
        if source is not None:
            tokens = self.tokenizer.text2tokens(self.text_cleaner(source))
            if not tokens:
                raise ValueError(f"utterance {uid}: empty source text in 'src_text'")
            data["src_text"] = np.array(self.token_id_converter.tokens2ids(tokens))
        if prompt is not None:
            data["prompt"] = np.array([self._prompt_id(uid, sym) for sym in prompt.split()])
            if len(data["prompt"]) == 0:
                raise ValueError(f"utterance {uid}: empty 'prompt'")
        return data

    def _prompt_id(self, uid, symbol):
        token2id = self.token_id_converter.token2id
        if symbol not in token2id:
            raise ValueError(
                f"utterance {uid}: prompt token {symbol!r} is not in the token list"
            )
        return token2id[symbol]


def expected_sample_rate(args) -> Optional[int]:
    """The rate the frontend expects (s3prl upstreams: 16 kHz), None without a frontend."""
    if getattr(args, "input_size", None) is not None or args.frontend is None:
        return None
    if args.frontend == "s3prl":
        return 16000
    fs = args.frontend_conf.get("fs", 16000)
    return humanfriendly.parse_size(fs) if isinstance(fs, str) else int(fs)


def check_text_inputs(data_path_and_name_and_type):
    """Every ``text`` input (text, src_text, prompt) must be UTF-8 with one non-empty
    value per key: espnet's reader would fail on the first bad line without naming it
    ("This line doesn't include a space") or keep the first of two lines of one key."""
    for path, name, loader_type in data_path_and_name_and_type:
        if loader_type != "text":
            continue
        if not os.path.isfile(path):
            raise DataDirError(f"{path}: no such file (--*_data_path_and_name_and_type "
                               f"{path},{name},{loader_type})")
        # raises DataDirError naming a non-UTF-8 line
        entries, problems = read_map(path, allow_empty_values=True)
        problems += [f"{path}: utterance {key} has an empty transcript ('{name}')"
                     for key, value in entries.items() if not value]
        if problems:
            raise DataDirError("; ".join(problems[:3]) + (
                f" ({len(problems)} problems); fix the file, or drop the utterances with "
                "utils/fix_data_dir.sh <data dir> (empty transcripts are dropped)"))


class DecoderOnlyTrainer(Trainer):
    """espnet's Trainer; resuming from a damaged ``checkpoint.pth`` names the file."""

    @staticmethod
    def resume(checkpoint, *args, **kwargs):
        try:
            Trainer.resume(checkpoint, *args, **kwargs)
        except Exception as error:
            # the file read alone (only on failure): a damaged file is named as such
            read_checkpoint(checkpoint)
            raise ModelFileError(
                f"{checkpoint}: cannot resume from it ({type(error).__name__}: "
                f"{str(error)[:300]}); remove it to start the training anew, or resume "
                "with the config it was written with"
            ) from error


class DecoderOnlyTask(AbsTask):
    num_optimizers: int = 1

    class_choices_list = [
        frontend_choices,
        specaug_choices,
        normalize_choices,
        encoder_choices,
        decoder_choices,
        attention_choices,
    ]

    trainer = DecoderOnlyTrainer

    @classmethod
    def build_model_from_file(cls, config_file=None, model_file=None, device: str = "cpu"):
        """espnet's builder with the model file loaded strictly (every key and shape must
        match; a trainer checkpoint gives its model part): see ``model.checkpoint``."""
        if config_file is None and model_file is not None:
            config_file = Path(model_file).parent / "config.yaml"
        if config_file is not None and not Path(config_file).is_file():
            raise FileNotFoundError(f"{config_file}: no such training config (config.yaml "
                                    "of the experiment)")
        model, args = super().build_model_from_file(config_file, None, device)
        if model_file is not None:
            location = f"cuda:{torch.cuda.current_device()}" if device == "cuda" else device
            load_model_state(model, model_file, config_file, map_location=location)
        return model, args

    @classmethod
    def get_parser(cls):
        parser = super().get_parser()
        # --ngpu N trains with one process per GPU (DDP, as ESPnet's recipes launch it),
        # never with single-process DataParallel.
        parser.set_defaults(multiprocessing_distributed=True)
        return parser

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None, cmd=None):
        if args is None:
            args = cls.get_parser().parse_args(cmd)
        check_gpu_launch(args)
        keep_experiment_config(args)
        for option in ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type"):
            inputs = getattr(args, option, None) or []
            check_text_inputs(inputs)
            check_sound_inputs(inputs, expected_sample_rate(args))
        # espnet asks NCCL for INFO logs (~150 lines per process in exp/*/train.log);
        # warnings unless the user sets NCCL_DEBUG
        os.environ.setdefault("NCCL_DEBUG", "WARN")
        super().main(args=args)

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        required = parser.get_default("required")
        required += ["token_list"]
        group.add_argument("--token_list", type=str_or_none, default=None,
                           help="A text file mapping int-id to token (one token per line)")
        group.add_argument("--init", type=lambda x: str_or_none(x.lower()), default=None,
                           choices=["chainer", "xavier_uniform", "xavier_normal",
                                    "kaiming_uniform", "kaiming_normal", None],
                           help="The initialization method")
        group.add_argument("--input_size", type=int_or_none, default=None,
                           help="The feature dimension when features come from the data "
                           "loader (kaldi_ark); no frontend is used then")
        group.add_argument("--model_conf", action=NestedDictAction,
                           default=get_default_kwargs(ESPnetDecoderOnlyModel),
                           help="Keyword arguments of ESPnetDecoderOnlyModel")
        group.add_argument("--ctc_conf", action=NestedDictAction,
                           default=get_default_kwargs(CTC), help="Keyword arguments of CTC")

        group = parser.add_argument_group(description="Preprocess related")
        group.add_argument("--use_preprocessor", type=str2bool, default=True,
                           help="Apply preprocessing to data or not")
        group.add_argument("--preprocessor_conf", action=NestedDictAction, default=dict(),
                           help="Further keyword arguments of espnet's CommonPreprocessor, "
                           "e.g. online augmentation in training: data_aug_effects "
                           "([[1.0, speed_perturb, {factor: 0.9}], ...]), data_aug_num, "
                           "data_aug_prob")
        group.add_argument("--token_type", type=str, default="bpe",
                           choices=["bpe", "char", "word"], help="The text token unit")
        group.add_argument("--bpemodel", type=str_or_none, default=None,
                           help="The sentencepiece model file")
        group.add_argument("--non_linguistic_symbols", type=str_or_none, default=None,
                           help="A file of non-linguistic symbols (one per line)")
        group.add_argument("--cleaner", type=str_or_none, default=None,
                           choices=[None, "tacotron", "jaconv", "vietnamese"],
                           help="Apply text cleaning")
        group.add_argument("--speech_volume_normalize", type=float, default=None,
                           help="Scale the maximum amplitude to this value")

        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)
        return parser

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        if not args.use_preprocessor:
            return None
        return DecoderOnlyPreprocessor(
            train=train,
            token_type=args.token_type,
            token_list=args.token_list,
            bpemodel=args.bpemodel,
            non_linguistic_symbols=args.non_linguistic_symbols,
            text_cleaner=args.cleaner,
            speech_volume_normalize=getattr(args, "speech_volume_normalize", None),
            **(getattr(args, "preprocessor_conf", None) or {}),
        )

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return () if inference else ("text",)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech", "src_text", "prompt")

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        if args.distributed and args.multiprocessing_distributed:
            fork_data_loader_workers()
        super().main_worker(args)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetDecoderOnlyModel:
        if isinstance(args.token_list, str):
            with open(args.token_list, encoding="utf-8") as f:
                token_list = [line.rstrip() for line in f]
            args.token_list = list(token_list)  # kept in config.yaml: the model is portable
        elif isinstance(args.token_list, (tuple, list)):
            token_list = list(args.token_list)
        else:
            raise ValueError("--token_list must be a file or a list of tokens")
        vocab_size = len(token_list)
        logging.info(f"Vocabulary size: {vocab_size}")

        input_type = args.model_conf.get("input_type", "speech")
        frontend = specaug = normalize = encoder = ctc = None
        if input_type == "speech":
            if args.input_size is None:
                frontend = construct(frontend_choices.get_class(args.frontend),
                                     "frontend_conf", args.frontend_conf)
                input_size = frontend.output_size()
            else:
                args.frontend, args.frontend_conf = None, {}
                input_size = args.input_size
            if args.specaug is not None:
                specaug = construct(specaug_choices.get_class(args.specaug),
                                    "specaug_conf", args.specaug_conf)
            if args.normalize is not None:
                normalize = construct(normalize_choices.get_class(args.normalize),
                                      "normalize_conf", args.normalize_conf)
            encoder = construct(encoder_choices.get_class(args.encoder), "encoder_conf",
                                args.encoder_conf, input_size=input_size)
            if args.model_conf.get("ctc_weight", 0.0) > 0:
                ctc = construct(CTC, "ctc_conf", args.ctc_conf, odim=vocab_size,
                                encoder_output_size=encoder.output_size())

        decoder = construct(decoder_choices.get_class(args.decoder), "decoder_conf",
                            args.decoder_conf, vocab_size=vocab_size,
                            attention=args.attention, attention_conf=args.attention_conf)
        model = construct(ESPnetDecoderOnlyModel, "model_conf", args.model_conf,
                          vocab_size=vocab_size, token_list=token_list, frontend=frontend,
                          specaug=specaug, normalize=normalize, encoder=encoder,
                          decoder=decoder, ctc=ctc)
        if args.init is not None:
            from espnet2.torch_utils.initialize import initialize

            initialize(model, args.init)
        return model
