"""SLURP, official layout::

    <root>/dataset/slurp/{train,train_synthetic,devel,test}.jsonl
    <root>/audio/slurp_real/<file>.flac      # the recordings of train, devel, test
    <root>/audio/slurp_synth/<file>.flac     # the recordings of train_synthetic

One jsonl line per sentence: ``slurp_id``, ``sentence``, ``scenario``, ``action`` (the
intent is ``scenario_action``) and ``recordings`` (each with a ``file``). Every recording
is one utterance; its text is ``<intent> <sentence>`` (the intent first, as
espnet2_mtla.bin.score's slu scoring reads it). Splits written: train (real +
synthetic), devel, test. Utterance ids: ``<slurp_id>-<recording file stem>``; speaker:
the recording's file stem (SLURP gives no speaker ids in these files)."""

import json
from pathlib import Path

from espnet2_mtla.corpora import CorpusError
from espnet2_mtla.data.kaldi_files import utt2spk_to_spk2utt, write_map

SOURCES = {"train": (("train", "slurp_real"), ("train_synthetic", "slurp_synth")),
           "devel": (("devel", "slurp_real"),), "test": (("test", "slurp_real"),)}
HOW_TO_GET = """SLURP is not where db.sh says (SLURP={root}).
Clone https://github.com/pswietojanski/slurp (its dataset/slurp/*.jsonl), then download
the audio with its scripts/download_audio.sh (slurp_real.tar.gz, slurp_synth.tar.gz from
https://zenodo.org/record/4274930) and unpack into {root}/audio/slurp_real and
{root}/audio/slurp_synth; set SLURP in db.sh to the clone."""


def prepare(root, out_dir, splits=("train", "devel", "test")):
    root = Path(root)
    for split in splits:
        text, wav, utt2spk = {}, {}, {}
        for name, audio_dir in SOURCES[split]:
            jsonl, audio = root / "dataset" / "slurp" / f"{name}.jsonl", root / "audio" / audio_dir
            for path in (jsonl, audio):
                if not path.exists():
                    raise CorpusError(HOW_TO_GET.format(root=root) + f"\nMissing: {path}")
            with open(jsonl, encoding="utf-8") as stream:
                for number, line in enumerate(stream, 1):
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                        intent = f"{entry['scenario']}_{entry['action']}"
                        sentence = " ".join(entry["sentence"].split())
                        recordings = entry["recordings"]
                        slurp_id = entry["slurp_id"]
                    except (ValueError, KeyError) as error:
                        raise CorpusError(f"{jsonl}:{number}: not a SLURP entry ({error})")
                    for recording in recordings:
                        stem = Path(recording["file"]).stem
                        utt = f"{slurp_id}-{stem}"
                        text[utt] = f"{intent} {sentence}"
                        wav[utt] = str((audio / recording["file"]).resolve())
                        utt2spk[utt] = utt
        missing = sorted(p for p in wav.values() if not Path(p).exists())
        if missing:
            raise CorpusError(f"{split}: {len(missing)} recordings missing, e.g. {missing[0]}")
        out = Path(out_dir) / split
        out.mkdir(parents=True, exist_ok=True)
        write_map(out / "text", text)
        write_map(out / "wav.scp", wav)
        write_map(out / "utt2spk", utt2spk)
        write_map(out / "spk2utt", utt2spk_to_spk2utt(utt2spk))
