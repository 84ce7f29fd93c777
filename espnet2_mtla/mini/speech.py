"""Speech from the espeak-ng synthesiser: many voices (accent x voice variant), varied
rate and pitch, resampled to the recipe's rate, optionally with white noise added."""

import io
import random
import shutil
import subprocess
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import soundfile
import torch
import torchaudio

ESPEAK = "espeak-ng"
INSTALL_HINT = "install it with 'apt-get install espeak-ng' (Debian/Ubuntu)"
# espeak-ng's own English voices (the mbrola ones need extra packages) and its variants
ACCENTS = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5")
# espeak-ng's named voice variants (espeak-ng --voices=variant) that sound like a person
# (no whisper, robot, announcer or croak): more speakers to train on (--more_voices)
NAMED_VARIANTS = (
    "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda",
    "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2",
    "Gene", "Gene2", "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4",
    "Jacky", "john", "kaukovalta", "Lee", "linda", "marcelo", "Marco", "Mario", "max",
    "Michael", "michel", "miguel", "Mike", "Mr", "Nguyen", "pablo", "paul", "pedro",
    "quincy", "rob", "robert", "steph", "steph2", "steph3", "Storm", "Tweaky", "zac",
    "anika", "AnxiousAndy", "grandpa", "norbert", "sandro", "shelby", "travis", "victor",
    "klatt", "klatt2", "klatt3", "klatt4")


@dataclass(frozen=True)
class Voice:
    accent: str
    variant: str
    rate: int    # words per minute
    pitch: int   # 0-99

    @property
    def speaker(self) -> str:
        """The speaker id of a data dir: one per accent and variant."""
        return f"{self.accent}+{self.variant}"


def check_espeak():
    if shutil.which(ESPEAK) is None:
        raise FileNotFoundError(f"{ESPEAK} is not installed: {INSTALL_HINT}")


def random_voice(rng: random.Random, variants=VARIANTS, accents=ACCENTS) -> Voice:
    return Voice(rng.choice(accents), rng.choice(variants), rng.randint(140, 200),
                 rng.randint(30, 70))


def synthesize(text: str, voice: Voice, fs: int = 16000, noise_snr_db: Optional[float] = None,
               noise_seed: int = 0) -> np.ndarray:
    """Float32 samples of ``text`` spoken by ``voice`` at ``fs`` Hz."""
    done = subprocess.run(
        [ESPEAK, "-v", voice.speaker, "-s", str(voice.rate), "-p", str(voice.pitch),
         "--stdout", text], capture_output=True)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"{ESPEAK} failed on {text!r} with voice {voice}: "
                           f"{done.stderr.decode(errors='replace')}")
    samples, rate = soundfile.read(io.BytesIO(done.stdout), dtype="float32")
    wave = torch.from_numpy(samples)
    if rate != fs:
        wave = torchaudio.functional.resample(wave, rate, fs)
    if noise_snr_db is not None:
        generator = torch.Generator().manual_seed(noise_seed)
        power = wave.pow(2).mean().clamp_min(1e-10)
        noise = torch.randn(wave.shape, generator=generator)
        wave = wave + noise * torch.sqrt(power / 10 ** (noise_snr_db / 10))
    peak = wave.abs().max().clamp_min(1e-6)
    return (wave * min(1.0, 0.95 / float(peak))).numpy()


def write_utterances(items: List[tuple], audio_dir, fs: int = 16000, noise_snr_db=None,
                     jobs: int = 2, progress: bool = True) -> List[str]:
    """Synthesize ``(key, text, voice)`` items to ``audio_dir/<key>.flac`` (kept when the
    file exists already, so an interrupted build resumes). Returns the paths in order."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from tqdm import tqdm

    check_espeak()
    audio_dir = Path(audio_dir)
    audio_dir.mkdir(parents=True, exist_ok=True)

    def one(item):
        key, text, voice = item
        path = audio_dir / f"{key}.flac"
        if not path.exists():
            seed = int.from_bytes(key.encode()[-8:].rjust(8, b"\0"), "little") % (2 ** 31)
            samples = synthesize(text, voice, fs, noise_snr_db, noise_seed=seed)
            partial = path.with_suffix(".partial.flac")
            soundfile.write(partial, samples, fs, subtype="PCM_16")
            partial.rename(path)
        return str(path)

    torch.set_num_threads(1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(tqdm(pool.map(one, items), total=len(items), disable=not progress,
                         desc=f"espeak-ng -> {audio_dir}", unit="utt"))
