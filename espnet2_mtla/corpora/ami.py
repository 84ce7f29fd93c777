"""AMI meeting corpus, individual headset microphones (ihm), official layout::

    <root>/amicorpus/<meeting>/audio/<meeting>.Headset-<channel>.wav
    <root>/annotations/corpusResources/meetings.xml      # ami_public_manual_1.6.2.zip,
    <root>/annotations/words/<meeting>.<agent>.words.xml # unpacked into annotations/
    <root>/annotations/segments/<meeting>.<agent>.segments.xml

``meetings.xml`` maps each meeting's agent letter (A-E) to its headset channel and global
speaker id. Each ``<segment>`` of a segments file is one utterance: its times are the
transcriber's start and end, its words the ``<w>`` elements (punctuation excluded) of
the word range its ``nite:child`` href points at. Transcripts are upper-cased, as in
Kaldi's AMI recipe. Utterance ids: ``AMI_<meeting>_H0<channel>_<speaker>_<start cs>_<end
cs>``; recordings ``AMI_<meeting>_H0<channel>``; speakers, as Kaldi's ihm data
preparation makes them, ``AMI_<meeting>_H0<channel>_<speaker>`` (one per meeting and
headset, a prefix of the utterance ids: utt2spk is sorted by speaker too, as
validate_data_dir.sh wants). The split follows the official
full-corpus ASR partition (dev and eval meeting lists below; every other meeting with
audio is train)."""

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from espnet2_mtla.corpora import CorpusError
from espnet2_mtla.data.kaldi_files import utt2spk_to_spk2utt, write_map

NITE = "{http://nite.sourceforge.net/}"
DEV = ("ES2011a ES2011b ES2011c ES2011d IB4001 IB4002 IB4003 IB4004 IB4010 IB4011 "
       "IS1008a IS1008b IS1008c IS1008d TS3004a TS3004b TS3004c TS3004d").split()
EVAL = ("EN2002a EN2002b EN2002c EN2002d ES2004a ES2004b ES2004c ES2004d IS1009a IS1009b "
        "IS1009c IS1009d TS3003a TS3003b TS3003c TS3003d").split()
HREF = re.compile(r"#id\(([^)]+)\)(?:\.\.id\(([^)]+)\))?")
HOW_TO_GET = """AMI is not where db.sh says (AMI={root}).
Download the headset audio (Headset-0..4 of each meeting) with the AMI download page
https://groups.inf.ed.ac.uk/ami/download/ into {root}/amicorpus/<meeting>/audio/, and
the manual annotations ami_public_manual_1.6.2.zip unpacked into {root}/annotations/
(so that {root}/annotations/words and {root}/annotations/corpusResources/meetings.xml
exist); set AMI in db.sh to that folder."""


def speakers_of_meetings(meetings_xml: Path):
    """{meeting: {agent: (channel, global speaker id)}}."""
    out = {}
    for meeting in ElementTree.parse(meetings_xml).getroot().iter("meeting"):
        agents = {}
        for speaker in meeting.iter("speaker"):
            agents[speaker.get("nxt_agent")] = (speaker.get("channel"), speaker.get("global_name"))
        out[meeting.get("observation")] = agents
    return out


def words_of(words_xml: Path):
    """Word ids in document order and {id: word} of the spoken words (no punctuation)."""
    order, spoken = [], {}
    for element in ElementTree.parse(words_xml).getroot():
        word_id = element.get(f"{NITE}id")
        if word_id is None:
            continue
        order.append(word_id)
        if element.tag == "w" and element.get("punc") != "true" and (element.text or "").strip():
            spoken[word_id] = element.text.strip()
    return order, spoken


def utterances(meeting, agent, channel, speaker, annotations: Path):
    segments_xml = annotations / "segments" / f"{meeting}.{agent}.segments.xml"
    words_xml = annotations / "words" / f"{meeting}.{agent}.words.xml"
    if not segments_xml.exists() or not words_xml.exists():
        return []
    order, spoken = words_of(words_xml)
    position = {word_id: index for index, word_id in enumerate(order)}
    out = []
    for segment in ElementTree.parse(segments_xml).getroot().iter("segment"):
        start, end = float(segment.get("transcriber_start")), float(segment.get("transcriber_end"))
        words = []
        for child in segment.iter(f"{NITE}child"):
            match = HREF.search(child.get("href", ""))
            if not match:
                continue
            first, last = match.group(1), match.group(2) or match.group(1)
            if first not in position or last not in position:
                raise CorpusError(f"{segments_xml}: href {child.get('href')} names words "
                                  f"missing from {words_xml.name}")
            words += [spoken[i] for i in order[position[first]:position[last] + 1] if i in spoken]
        if words and end > start:
            recording = f"AMI_{meeting}_H0{channel}"
            utt = f"{recording}_{speaker}_{round(start * 100):07d}_{round(end * 100):07d}"
            out.append((utt, recording, start, end, " ".join(words).upper(),
                        f"{recording}_{speaker}"))
    return out


def prepare(root, out_dir, splits=("train", "dev", "eval")):
    root = Path(root)
    annotations, audio = root / "annotations", root / "amicorpus"
    meetings_xml = annotations / "corpusResources" / "meetings.xml"
    for path in (meetings_xml, annotations / "words", annotations / "segments", audio):
        if not path.exists():
            raise CorpusError(HOW_TO_GET.format(root=root) + f"\nMissing: {path}")
    speakers = speakers_of_meetings(meetings_xml)
    with_audio = sorted(p.name for p in audio.iterdir() if (p / "audio").is_dir())
    members = {"dev": [m for m in with_audio if m in DEV],
               "eval": [m for m in with_audio if m in EVAL],
               "train": [m for m in with_audio if m not in DEV and m not in EVAL]}
    for split in splits:
        maps = {name: {} for name in ("wav.scp", "segments", "text", "utt2spk")}
        for meeting in members[split]:
            if meeting not in speakers:
                raise CorpusError(f"{meetings_xml}: no entry for meeting {meeting}")
            for agent, (channel, speaker) in sorted(speakers[meeting].items()):
                wav = audio / meeting / "audio" / f"{meeting}.Headset-{channel}.wav"
                found = utterances(meeting, agent, channel, speaker, annotations)
                if found and not wav.exists():
                    raise CorpusError(f"{wav}: missing (headset of {speaker} in {meeting})")
                for utt, recording, start, end, text, spk in found:
                    maps["wav.scp"][recording] = str(wav.resolve())
                    maps["segments"][utt] = f"{recording} {start:.2f} {end:.2f}"
                    maps["text"][utt] = text
                    maps["utt2spk"][utt] = spk
        if not maps["text"]:
            raise CorpusError(f"AMI {split}: no annotated headset audio found under {audio}")
        out = Path(out_dir) / split
        out.mkdir(parents=True, exist_ok=True)
        for name, entries in maps.items():
            write_map(out / name, entries)
        write_map(out / "spk2utt", utt2spk_to_spk2utt(maps["utt2spk"]))
