"""Tiny corpora in the official layouts of MuST-C, AMI, SLURP and XSum (generated audio:
tones), for testing the corpus recipes' data preparation."""

import json
from pathlib import Path

import numpy as np
import soundfile

FS = 16000


def tone(seconds: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def must_c(root: Path):
    """en-de with a train split of two talks (3 segments) and dev of one talk."""
    layout = {
        "train": [("ted_1", "spk.1", 0.5, 1.2, "Hello there.", "Hallo."),
                  ("ted_1", "spk.1", 2.0, 1.0, "How are you?", "Wie geht es dir?"),
                  ("ted_2", "spk.2", 0.25, 1.5, "Good  morning.", "Guten Morgen.")],
        "dev": [("ted_3", "spk.3", 1.0, 1.0, "Thank you.", "Danke.")],
        "tst-COMMON": [("ted_4", "spk.4", 0.0, 2.0, "See you.", "Bis bald.")],
    }
    for split, rows in layout.items():
        base = root / "en-de" / "data" / split
        (base / "wav").mkdir(parents=True)
        (base / "txt").mkdir()
        for talk in sorted({r[0] for r in rows}):
            soundfile.write(base / "wav" / f"{talk}.wav", tone(5.0), FS)
        segments = "".join(f"- {{duration: {d}, offset: {o}, rW: 2, uW: 0, speaker_id: {s}, "
                           f"wav: {t}.wav}}\n" for t, s, o, d, _, _ in rows)
        (base / "txt" / f"{split}.yaml").write_text(segments)
        (base / "txt" / f"{split}.en").write_text("".join(r[4] + "\n" for r in rows))
        (base / "txt" / f"{split}.de").write_text("".join(r[5] + "\n" for r in rows))
    return layout


AMI_MEETINGS = """<?xml version="1.0" encoding="UTF-8"?>
<meetings xmlns:nite="http://nite.sourceforge.net/">
 <meeting nite:id="m1" observation="ES2002a" type="scenario">
  <speaker nite:id="s1" global_name="FEE005" channel="1" nxt_agent="A" role="PM"/>
  <speaker nite:id="s2" global_name="MEE006" channel="0" nxt_agent="B" role="ID"/>
 </meeting>
 <meeting nite:id="m2" observation="ES2011a" type="scenario">
  <speaker nite:id="s3" global_name="FEE041" channel="2" nxt_agent="A" role="PM"/>
 </meeting>
 <meeting nite:id="m3" observation="EN2002a" type="non-scenario">
  <speaker nite:id="s4" global_name="MEE071" channel="3" nxt_agent="C"/>
 </meeting>
</meetings>
"""


def _ami_words(meeting, agent, words):
    body = "".join(
        f' <w nite:id="{meeting}.{agent}.words{i}" starttime="{s}" endtime="{e}"'
        + (' punc="true"' if text in ".,?" else "") + f">{text}</w>\n"
        + (f' <vocalsound nite:id="{meeting}.{agent}.vs{i}" type="laugh"/>\n' if i == 1 else "")
        for i, (text, s, e) in enumerate(words))
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<nite:root nite:id="{meeting}.{agent}.words"'
            f' xmlns:nite="http://nite.sourceforge.net/">\n{body}</nite:root>\n')


def _ami_segments(meeting, agent, ranges):
    lines = []
    for n, (start, end, first, last) in enumerate(ranges):
        href = f"{meeting}.{agent}.words.xml#id({meeting}.{agent}.words{first})"
        if last != first:
            href += f"..id({meeting}.{agent}.words{last})"
        lines.append(f' <segment nite:id="{meeting}.sync.{n}" transcriber_start="{start}" '
                     f'transcriber_end="{end}"><nite:child href="{href}"/></segment>\n')
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<nite:root nite:id="{meeting}.{agent}.segs"'
            f' xmlns:nite="http://nite.sourceforge.net/">\n{"".join(lines)}</nite:root>\n')


def ami(root: Path):
    """ES2002a (train: agents A on Headset-1, B on Headset-0), ES2011a (dev), EN2002a (eval)."""
    ann = root / "annotations"
    (ann / "corpusResources").mkdir(parents=True)
    (ann / "words").mkdir()
    (ann / "segments").mkdir()
    (ann / "corpusResources" / "meetings.xml").write_text(AMI_MEETINGS)
    words = {("ES2002a", "A"): [("Okay", 1.0, 1.3), (".", 1.3, 1.3), ("Right", 2.0, 2.4),
                                ("then", 2.4, 2.7)],
             ("ES2002a", "B"): [("Hmm", 0.5, 0.9)],
             ("ES2011a", "A"): [("Hello", 0.2, 0.6), ("all", 0.6, 0.9)],
             ("EN2002a", "C"): [("Yeah", 0.3, 0.5)]}
    segments = {("ES2002a", "A"): [(0.9, 1.4, 0, 1), (1.9, 2.8, 2, 3)],
                ("ES2002a", "B"): [(0.4, 1.0, 0, 0)],
                ("ES2011a", "A"): [(0.1, 1.0, 0, 1)],
                ("EN2002a", "C"): [(0.2, 0.6, 0, 0)]}
    for (meeting, agent), items in words.items():
        (ann / "words" / f"{meeting}.{agent}.words.xml").write_text(_ami_words(meeting, agent, items))
        (ann / "segments" / f"{meeting}.{agent}.segments.xml").write_text(
            _ami_segments(meeting, agent, segments[(meeting, agent)]))
    for meeting, channels in (("ES2002a", (0, 1)), ("ES2011a", (2,)), ("EN2002a", (3,))):
        audio = root / "amicorpus" / meeting / "audio"
        audio.mkdir(parents=True)
        for channel in channels:
            soundfile.write(audio / f"{meeting}.Headset-{channel}.wav", tone(3.0), FS)


def slurp(root: Path):
    entries = {
        "train": [{"slurp_id": 7, "sentence": "wake me up at eight am", "scenario": "alarm",
                   "action": "set", "recordings": [{"file": "audio-1-headset.flac"},
                                                   {"file": "audio-1.flac"}]}],
        "train_synthetic": [{"slurp_id": 9, "sentence": "turn the lights off",
                             "scenario": "iot", "action": "hue_lightoff",
                             "recordings": [{"file": "synth-9.flac"}]}],
        "devel": [{"slurp_id": 11, "sentence": "what is the  weather", "scenario": "weather",
                   "action": "query", "recordings": [{"file": "audio-2.flac"}]}],
        "test": [{"slurp_id": 12, "sentence": "play jazz", "scenario": "play",
                  "action": "music", "recordings": [{"file": "audio-3.flac"}]}],
    }
    (root / "dataset" / "slurp").mkdir(parents=True)
    for name, rows in entries.items():
        with open(root / "dataset" / "slurp" / f"{name}.jsonl", "w") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
        audio = root / "audio" / ("slurp_synth" if name == "train_synthetic" else "slurp_real")
        audio.mkdir(parents=True, exist_ok=True)
        for row in rows:
            for recording in row["recordings"]:
                soundfile.write(audio / recording["file"], tone(1.0), FS)


def xsum(root: Path):
    articles = root / "bbc-summary-data"
    articles.mkdir(parents=True)
    docs = {"100": ("A cat was found.", ["The cat sat on a mat.", "It was  happy."]),
            "101": ("Rain fell.", ["Rain fell all day.", "Roads flooded."]),
            "102": ("Team won.", ["The team won the cup."])}
    for key, (summary, body) in docs.items():
        (articles / f"{key}.summary").write_text(
            f"[SN]URL[SN]\nhttp://www.bbc.com/news/{key}\n[SN]TITLE[SN]\nTitle {key}\n"
            f"[SN]FIRST-SENTENCE[SN]\n{summary}\n[SN]RESTBODY[SN]\n" + "\n".join(body) + "\n")
    split = {"train": ["100", "101", "999"], "validation": ["102"], "test": ["101"]}
    (root / "XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json").write_text(json.dumps(split))
    return docs
