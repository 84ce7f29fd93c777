"""Check every utterance of a ``sound`` list before a model reads it.

espnet's loaders compare each file's sample rate only with the first file one reader has
seen (and the streaming iterator of inference not at all), so an 8 kHz file among 16 kHz
ones is read as 16 kHz; a stereo file passes as two channels, a missing file fails after
hours with no key named. Here each file's header is read (soundfile: no samples are
decoded, ~0.1 ms a file) and every utterance must be readable, mono, non-empty and at
the rate the model's frontend expects. The problems name key, file and what to do.
"""

import logging
import os
from typing import Dict, Iterable, Optional, Tuple

import soundfile

from espnet2_mtla.data.kaldi_files import read_map

# a module logger: these checks run before espnet sets up logging in a training process,
# and a module-level logging.info there would set up the root logger at WARNING and
# silence the run's INFO lines (its epoch results) in exp/*/train.log
logger = logging.getLogger(__name__)
PROGRESS_EVERY = 20000  # utterances between progress lines of a long check


class BadAudioError(ValueError):
    """Utterances that cannot be read as the model expects; the message names them."""


def audio_problem(path: str, fs: Optional[int]) -> Optional[str]:
    """What is wrong with the audio file ``path`` for a model at ``fs`` Hz (None: fine;
    ``fs`` None: any rate)."""
    if path.rstrip().endswith("|"):
        return "a command (Kaldi pipe) cannot be read as 'sound': run mtla.sh stage 3"
    if not os.path.isfile(path):
        return f"no such file {path}"
    try:
        info = soundfile.info(path)
    except Exception as error:  # libsndfile's errors may not even print (str() fails)
        detail = getattr(error, "error_string", None) or type(error).__name__
        return f"cannot read {path} ({detail})"
    if info.frames == 0:
        return f"{path} has no samples"
    if info.channels != 1:
        return (f"{path} has {info.channels} channels, the model takes one (mtla.sh stage 3 "
                "keeps the first channel)")
    if fs is not None and info.samplerate != fs:
        return (f"{path} has sample rate {info.samplerate} Hz but the model expects {fs} Hz "
                "(frontend_conf.fs): resample it (mtla.sh stage 3, --fs)")
    return None


def sound_list_problems(scp: str, fs: Optional[int]) -> Dict[str, str]:
    """{key: problem} of every utterance of the ``key path`` list ``scp``."""
    entries, problems = read_map(scp)
    if problems:
        raise BadAudioError(f"{scp}: " + "; ".join(problems[:3]))
    if not entries:
        raise BadAudioError(f"{scp}: no utterances (expected 'key path' lines)")
    found = {}
    for number, (key, path) in enumerate(entries.items(), start=1):
        problem = audio_problem(path, fs)
        if problem is not None:
            found[key] = problem
        if number % PROGRESS_EVERY == 0:
            logger.info(f"{scp}: checked {number}/{len(entries)} utterances")
    return found


def check_sound_inputs(data_path_and_name_and_type: Iterable[Tuple[str, str, str]],
                       fs: Optional[int], skip: bool = False) -> Dict[str, str]:
    """Check every ``sound`` input of an espnet data option.

    Returns {key: problem} of the bad utterances when ``skip``; otherwise raises
    BadAudioError naming the first ones (key, file, problem) and their count.
    """
    found = {}
    for path, name, loader_type in data_path_and_name_and_type:
        if loader_type != "sound":
            continue
        for key, problem in sound_list_problems(path, fs).items():
            found.setdefault(key, f"{path}: {problem}")
    if found and not skip:
        shown = "\n".join(f"  utterance {key}: {problem}"
                          for key, problem in list(found.items())[:5])
        raise BadAudioError(
            f"{len(found)} utterance(s) cannot be read as the model expects:\n{shown}\n"
            "fix or drop them (utils/fix_data_dir.sh after removing their lines)"
        )
    return found
