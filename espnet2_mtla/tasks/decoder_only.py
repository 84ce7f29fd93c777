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
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Callable, Dict, Optional, Tuple

import humanfriendly
import numpy as np
import soundfile
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
from espnet2_mtla.model.decoder import DecoderOnlyStack
from espnet2_mtla.model.espnet_model import ESPnetDecoderOnlyModel

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


def check_sample_rates(data_path_and_name_and_type, fs: Optional[int]):
    """The first file of every ``sound`` list must have rate ``fs``.

    espnet's sound loader then rejects any file whose rate differs from the first one,
    naming the utterance, so together every file is checked.
    """
    if fs is None:
        return
    for path, name, loader_type in data_path_and_name_and_type:
        if loader_type != "sound":
            continue
        with open(path, encoding="utf-8") as scp:
            first = scp.readline().split(maxsplit=1)
        if len(first) < 2:
            raise ValueError(f"{path}: empty or malformed sound list (expected 'key path')")
        key, audio_path = first[0], first[1].strip()
        try:
            rate = soundfile.info(audio_path).samplerate
        except Exception as error:
            raise ValueError(f"{path}: utterance {key}: cannot read {audio_path}: {error}")
        if rate != fs:
            raise ValueError(
                f"{path}: utterance {key} ({audio_path}) has sample rate {rate} Hz but the "
                f"frontend expects {fs} Hz (frontend_conf.fs); resample the data "
                "(mtla.sh --fs) or change the config"
            )


def check_gpu_launch(args: argparse.Namespace):
    """Refuse launches that would put two processes on one GPU or ask for absent GPUs.

    ``--ngpu N`` with ``--multiprocessing_distributed true`` (our default) spawns N
    processes per node; a launcher that itself starts several processes per node
    (torchrun ``--nproc_per_node 2``) would multiply that, and with ``--ngpu 1`` espnet
    pins every such process to GPU 0.
    """
    processes_per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if args.multiprocessing_distributed and args.ngpu >= 1 and processes_per_node > 1:
        raise ValueError(
            f"--ngpu {args.ngpu} with --multiprocessing_distributed true, but the launcher "
            f"started {processes_per_node} processes on this node (LOCAL_WORLD_SIZE): "
            "start one process per node (torchrun --nproc_per_node 1 ... --ngpu "
            "<GPUs per node>), or one per GPU with --ngpu 1 --multiprocessing_distributed "
            "false"
        )
    visible = torch.cuda.device_count()
    if args.ngpu > visible:
        raise ValueError(
            f"--ngpu {args.ngpu}, but {visible} GPU(s) are visible to this process "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )


def fork_data_loader_workers():
    """Start data loader workers by fork in the per-GPU processes espnet spawns.

    ``--ngpu N`` runs each GPU's trainer in a process started by ``spawn``, whose default
    start method is then ``spawn`` too: every epoch's train and valid loaders would start
    their workers by re-importing espnet and this toolkit (seen on an H200 host: ~18 s of
    every 2-GPU validation of a 40-utterance set that takes 0.4 s on 1 GPU). Workers only
    read and preprocess data, never CUDA, so fork is safe, as in single-process training.
    """
    if sys.platform.startswith("linux") and multiprocessing.get_start_method() == "spawn":
        multiprocessing.set_start_method("fork", force=True)


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

    trainer = Trainer

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
        for option in ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type"):
            check_sample_rates(getattr(args, option, None) or [], expected_sample_rate(args))
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
                frontend = frontend_choices.get_class(args.frontend)(**args.frontend_conf)
                input_size = frontend.output_size()
            else:
                args.frontend, args.frontend_conf = None, {}
                input_size = args.input_size
            if args.specaug is not None:
                specaug = specaug_choices.get_class(args.specaug)(**args.specaug_conf)
            if args.normalize is not None:
                normalize = normalize_choices.get_class(args.normalize)(**args.normalize_conf)
            encoder = encoder_choices.get_class(args.encoder)(
                input_size=input_size, **args.encoder_conf
            )
            if args.model_conf.get("ctc_weight", 0.0) > 0:
                ctc = CTC(odim=vocab_size, encoder_output_size=encoder.output_size(),
                          **args.ctc_conf)

        decoder = decoder_choices.get_class(args.decoder)(
            vocab_size=vocab_size,
            attention=args.attention,
            attention_conf=args.attention_conf,
            **args.decoder_conf,
        )
        model = ESPnetDecoderOnlyModel(
            vocab_size=vocab_size,
            token_list=token_list,
            frontend=frontend,
            specaug=specaug,
            normalize=normalize,
            encoder=encoder,
            decoder=decoder,
            ctc=ctc,
            **args.model_conf,
        )
        if args.init is not None:
            from espnet2.torch_utils.initialize import initialize

            initialize(model, args.init)
        return model
