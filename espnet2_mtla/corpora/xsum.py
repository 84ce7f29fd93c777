"""XSum, official layout (the output of the XSum authors' download and extraction)::

    <root>/bbc-summary-data/<id>.summary
    <root>/XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json   # {"train": [ids], "validation": [...], "test": [...]}

A ``.summary`` file holds sections opened by ``[SN]URL[SN]``, ``[SN]TITLE[SN]``,
``[SN]FIRST-SENTENCE[SN]`` (the summary) and ``[SN]RESTBODY[SN]`` (the document, one
sentence per line). Writes per split: src_text (document, lines joined by spaces), text
(summary), utt2spk (each document its own speaker). Ids missing from the download are
reported and skipped (the public download lacks a few hundred); an empty document or
summary is reported and skipped too."""

import json
import logging
import re
from pathlib import Path

from espnet2_mtla.corpora import CorpusError
from espnet2_mtla.data.kaldi_files import utt2spk_to_spk2utt, write_map

SPLIT_FILE = "XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json"
SECTION = re.compile(r"\[SN\](URL|TITLE|FIRST-SENTENCE|RESTBODY)\[SN\]")
HOW_TO_GET = """XSum is not where db.sh says (XSUM={root}).
Follow https://github.com/EdinburghNLP/XSum (XSum-Dataset/README.md): download the BBC
articles and extract them into {root}/bbc-summary-data/<id>.summary, and put
XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json into {root}; set XSUM in db.sh to that folder."""


def read_summary_file(path: Path):
    """(document, summary) of one .summary file."""
    parts = SECTION.split(path.read_text(encoding="utf-8"))
    sections = {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    if "FIRST-SENTENCE" not in sections or "RESTBODY" not in sections:
        raise CorpusError(f"{path}: no [SN]FIRST-SENTENCE[SN] or [SN]RESTBODY[SN] section")
    return " ".join(sections["RESTBODY"].split()), " ".join(sections["FIRST-SENTENCE"].split())


def prepare(root, out_dir, splits=("train", "validation", "test")):
    root = Path(root)
    split_file, articles = root / SPLIT_FILE, root / "bbc-summary-data"
    for path in (split_file, articles):
        if not path.exists():
            raise CorpusError(HOW_TO_GET.format(root=root) + f"\nMissing: {path}")
    ids = json.loads(split_file.read_text())
    for split in splits:
        src_text, text, missing, empty = {}, {}, [], []
        for article in ids[split]:
            path = articles / f"{article}.summary"
            if not path.exists():
                missing.append(article)
                continue
            document, summary = read_summary_file(path)
            if not document or not summary:
                empty.append(article)
                continue
            src_text[str(article)], text[str(article)] = document, summary
        if missing:
            logging.warning("xsum %s: %d of %d articles not downloaded, e.g. %s", split,
                            len(missing), len(ids[split]), missing[0])
        if empty:
            logging.warning("xsum %s: %d articles with an empty document or summary skipped, "
                            "e.g. %s", split, len(empty), empty[0])
        if not text:
            raise CorpusError(f"xsum {split}: none of its {len(ids[split])} articles found "
                              f"under {articles}")
        out = Path(out_dir) / split
        out.mkdir(parents=True, exist_ok=True)
        utt2spk = {key: key for key in text}
        write_map(out / "src_text", src_text)
        write_map(out / "text", text)
        write_map(out / "utt2spk", utt2spk)
        write_map(out / "spk2utt", utt2spk_to_spk2utt(utt2spk))
