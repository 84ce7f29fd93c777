"""fairseq-style fbank80.zip archives: writer, reader (ESPnet type zip_npy), offsets past
4 GiB, global CMVN from gcmvn.npz, manifest import/export, and the errors on bad input."""

import zipfile

import numpy as np
import pytest
import torch
import yaml

from espnet2_mtla.bin.fairseq_manifest import main as manifest
from espnet2_mtla.bin.write_fbank import main as write_fbank
from espnet2_mtla.features.global_cmvn import GlobalCMVN
from espnet2_mtla.features.zip_features import (ZipFeatureReader, ZipFeatureWriter,
                                                member_locations, read_feature)
from espnet2_mtla.frontend.kaldi_fbank import KaldiFbankFrontend
from espnet2_mtla.data.kaldi_files import read_map
from speech_fixtures import TRANSCRIPTS, token_list, write_data_dir
from test_task_cli import CONFIG, train_cli


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("fbankzip")
    write_data_dir(root / "data")
    (root / "data" / "utt2spk").write_text("".join(
        f"{k} spk{k[-1]}\n" for k in sorted(TRANSCRIPTS)))
    (root / "data" / "spk2utt").write_text("".join(
        f"spk{k[-1]} {k}\n" for k in sorted(TRANSCRIPTS)))
    assert write_fbank(["--data_dir", str(root / "data"), "--out_dir", str(root / "feats"),
                            "--gcmvn"]) == 0
    return root


def test_reader_returns_exactly_what_was_written(tmp_path):
    rng = np.random.default_rng(0)
    matrices = {f"u{i}": rng.standard_normal((7 + i, 80)).astype(np.float32) for i in range(4)}
    with ZipFeatureWriter(tmp_path / "f.zip") as writer:
        for key, matrix in matrices.items():
            writer.write(key, matrix)
    with zipfile.ZipFile(tmp_path / "f.zip") as z:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in z.infolist())
    locations = member_locations(tmp_path / "f.zip")
    (tmp_path / "feats.scp").write_text("".join(
        f"{k} f.zip:{locations[k + '.npy'][0]}:{locations[k + '.npy'][1]}\n" for k in matrices))
    reader = ZipFeatureReader(tmp_path / "feats.scp")  # relative to the listing's folder
    for key, matrix in matrices.items():
        got = reader[key]
        assert got.dtype == matrix.dtype and np.array_equal(got, matrix)
        assert got.tobytes() == matrix.tobytes()


def test_offsets_beyond_4_gib(tmp_path):
    """A sparse archive whose member lies past 4 GiB (zip64 offsets), read by offset."""
    path = tmp_path / "big.zip"
    matrix = np.arange(240, dtype=np.float32).reshape(3, 80)
    gap = (4 << 30) + 12345
    with open(path, "wb") as raw:
        raw.seek(gap)
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
            z.writestr("far.npy", __import__("espnet2_mtla.features.zip_features",
                                             fromlist=["npy_bytes"]).npy_bytes(matrix))
    offset, length = member_locations(path)["far.npy"]
    assert offset > 4 << 30
    assert np.array_equal(read_feature(f"{path}:{offset}:{length}", "far"), matrix)


def test_writer_resumes_and_lists_every_utterance(archive, caplog):
    listing = read_map(archive / "feats" / "feats.scp")[0]
    assert sorted(listing) == sorted(TRANSCRIPTS)
    assert all(v.startswith("fbank80.zip:") for v in listing.values())
    before = (archive / "feats" / "fbank80.zip").stat().st_size
    assert write_fbank(["--data_dir", str(archive / "data"),
                            "--out_dir", str(archive / "feats")]) == 0
    assert (archive / "feats" / "fbank80.zip").stat().st_size == before  # nothing rewritten
    frames = read_map(archive / "feats" / "utt2num_frames")[0]
    reader = ZipFeatureReader(archive / "feats" / "feats.scp")
    assert all(reader[k].shape == (int(frames[k]), 80) for k in listing)


def test_archive_features_equal_the_online_kaldi_fbank_frontend(archive):
    """What a model reads: zip_npy features vs frontend kaldi_fbank on the audio."""
    from espnet2.train.dataset import ESPnetDataset

    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask  # registers zip_npy

    assert DecoderOnlyTask is not None
    audio = ESPnetDataset([(str(archive / "data" / "wav.scp"), "speech", "sound")])
    stored = ESPnetDataset([(str(archive / "feats" / "feats.scp"), "speech", "zip_npy")])
    frontend = KaldiFbankFrontend(fs=16000, num_mel_bins=80)
    worst = 0.0
    for key in sorted(TRANSCRIPTS):
        speech = torch.from_numpy(audio[key][1]["speech"]).float()[None]
        online, _ = frontend(speech, torch.tensor([speech.shape[1]]))
        offline = torch.from_numpy(stored[key][1]["speech"])
        assert online.shape[1:] == offline.shape
        worst = max(worst, float((online[0] - offline).abs().max()))
    assert worst < 1e-4, worst  # the same computation; float32 rounding at most


def test_models_train_on_archive_and_online_features(archive, tmp_path):
    (tmp_path / "tokens.txt").write_text("\n".join(token_list()) + "\n")
    feats = archive / "feats"
    shape = tmp_path / "shape"
    shape.write_text("".join(f"{k} {v},80\n" for k, v in
                             read_map(feats / "utt2num_frames")[0].items()))
    config = {**CONFIG, "fold_length": [800], "normalize": "global_mvn",
              "normalize_conf": {"stats_file": str(feats / "gcmvn.npz")}}
    (tmp_path / "zip.yaml").write_text(yaml.safe_dump(config))
    args = []
    for mode in ("train", "valid"):
        args += [f"--{mode}_data_path_and_name_and_type", f"{feats}/feats.scp,speech,zip_npy",
                 f"--{mode}_data_path_and_name_and_type", f"{feats}/text,text,text",
                 f"--{mode}_shape_file", str(shape)]
    train_cli(["--config", tmp_path / "zip.yaml", "--token_list", tmp_path / "tokens.txt",
               "--input_size", 80, *args, "--output_dir", tmp_path / "exp_zip"])
    assert (tmp_path / "exp_zip" / "1epoch.pth").exists()
    online = {**config, "frontend": "kaldi_fbank",
              "frontend_conf": {"fs": 16000, "num_mel_bins": 80}, "fold_length": [80000]}
    (tmp_path / "online.yaml").write_text(yaml.safe_dump(online))
    import soundfile
    (tmp_path / "speech_shape").write_text("".join(
        f"{k} {soundfile.info(p).frames}\n" for k, p in
        read_map(archive / "data" / "wav.scp")[0].items()))
    args = []
    for mode in ("train", "valid"):
        args += [f"--{mode}_data_path_and_name_and_type", f"{archive}/data/wav.scp,speech,sound",
                 f"--{mode}_data_path_and_name_and_type", f"{archive}/data/text,text,text",
                 f"--{mode}_shape_file", str(tmp_path / "speech_shape")]
    train_cli(["--config", tmp_path / "online.yaml", "--token_list", tmp_path / "tokens.txt",
               *args, "--output_dir", tmp_path / "exp_online"])
    assert (tmp_path / "exp_online" / "1epoch.pth").exists()


def test_gcmvn_normalises_like_global_mvn(archive):
    stats = np.load(archive / "feats" / "gcmvn.npz")
    norm = GlobalCMVN(archive / "feats" / "gcmvn.npz")
    x = torch.randn(2, 5, 80)
    y, _ = norm(x.clone(), torch.tensor([5, 5]))
    expected = (x - torch.from_numpy(stats["mean"])) / torch.from_numpy(stats["std"])
    torch.testing.assert_close(y, expected)
    # the archive's statistics are those of its frames
    reader = ZipFeatureReader(archive / "feats" / "feats.scp")
    frames = np.concatenate([reader[k] for k in reader])
    np.testing.assert_allclose(stats["mean"], frames.mean(0), rtol=1e-4, atol=1e-4)


def test_manifest_export_then_import_round_trips(archive, tmp_path):
    feats = archive / "feats"
    (feats / "utt2src_lang").write_text("".join(f"{k} en\n" for k in sorted(TRANSCRIPTS)))
    try:
        assert manifest(["export", "--data_dir", str(feats), "--tsv",
                         str(tmp_path / "m" / "train.tsv")]) == 0
        header = (tmp_path / "m" / "train.tsv").read_text().splitlines()[0].split("\t")
        assert header == ["id", "audio", "n_frames", "tgt_text", "speaker", "src_lang"]
        assert manifest(["import", "--tsv", str(tmp_path / "m" / "train.tsv"),
                         "--out", str(tmp_path / "back")]) == 0
    finally:
        (feats / "utt2src_lang").unlink()
    back = tmp_path / "back"
    for name in ("text", "utt2spk", "utt2num_frames", "spk2utt", "utt2src_lang"):
        source = feats / name if name != "utt2src_lang" else None
        if source is not None:
            assert read_map(back / name, allow_empty_values=True)[0] == \
                read_map(source, allow_empty_values=True)[0], name
    original = read_map(feats / "feats.scp")[0]
    imported = read_map(back / "feats.scp")[0]
    assert {k: v.rsplit(":", 2)[1:] for k, v in imported.items()} == \
        {k: v.rsplit(":", 2)[1:] for k, v in original.items()}
    assert all(v.startswith(str((feats / "fbank80.zip").resolve())) for v in imported.values())
    reader = ZipFeatureReader(back / "feats.scp")
    assert np.array_equal(reader["utt1"], ZipFeatureReader(feats / "feats.scp")["utt1"])


def fairseq_read(audio: str, audio_root: str = ""):
    """A feature the way fairseq's S2T dataset reads it: the path joined to the config's
    audio_root (pathlib: an absolute path wins), split into path:offset:length, the bytes
    at offset read from the file, and loaded as .npy (fairseq's is_npy_data)."""
    import io
    from pathlib import Path

    path, offset, length = (Path(audio_root) / audio).as_posix().split(":")
    with open(path, "rb") as stream:
        stream.seek(int(offset))
        data = stream.read(int(length))
    assert data[:2] == b"\x93N"
    return np.load(io.BytesIO(data))


def test_exported_manifest_reads_in_fairseq_from_any_directory(archive, tmp_path, monkeypatch):
    import csv

    tsv = tmp_path / "manifests" / "train.tsv"
    assert manifest(["export", "--data_dir", str(archive / "feats"), "--tsv", str(tsv)]) == 0
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # fairseq-train started from another folder
    reader = ZipFeatureReader(archive / "feats" / "feats.scp")
    with open(tsv, newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(rows) == len(TRANSCRIPTS)
    for row in rows:
        for root in ("", "/some/audio_root"):  # fairseq's default config, and another
            features = fairseq_read(row["audio"], root)
            assert np.array_equal(features, reader[row["id"]])
            assert features.shape[0] == int(row["n_frames"])


def test_import_takes_relative_paths_from_audio_root(archive, tmp_path):
    tsv = tmp_path / "m" / "train.tsv"
    assert manifest(["export", "--data_dir", str(archive / "feats"), "--tsv", str(tsv)]) == 0
    zip_path = str((archive / "feats" / "fbank80.zip").resolve())
    tsv.write_text(tsv.read_text().replace(zip_path, "fbank80.zip"))  # fairseq-relative
    assert manifest(["import", "--tsv", str(tsv), "--out", str(tmp_path / "back"),
                     "--audio_root", str(archive / "feats")]) == 0
    reader = ZipFeatureReader(tmp_path / "back" / "feats.scp")
    assert np.array_equal(reader["utt1"], ZipFeatureReader(archive / "feats" / "feats.scp")["utt1"])


def test_bad_offsets_members_and_missing_statistics_are_named(archive, tmp_path):
    zip_path = archive / "feats" / "fbank80.zip"
    size = zip_path.stat().st_size
    with pytest.raises(ValueError, match="utterance uttX: bytes .* outside"):
        read_feature(f"{zip_path}:{size - 10}:100", "uttX")
    offset = member_locations(zip_path)["utt1.npy"][0]
    with pytest.raises(ValueError, match="utterance uttY .*not a valid .npy"):
        read_feature(f"{zip_path}:{offset + 3}:50", "uttY")
    with pytest.raises(FileNotFoundError, match="nowhere/gcmvn.npz"):
        GlobalCMVN(tmp_path / "nowhere" / "gcmvn.npz")
    (tmp_path / "bad.tsv").write_text("id\taudio\nx\tf.zip:1:2\n")
    assert manifest(["import", "--tsv", str(tmp_path / "bad.tsv"), "--out",
                     str(tmp_path / "o")]) == 1


def test_fbank_ark_holds_the_same_features_as_the_zip(archive, tmp_path):
    import kaldiio

    assert write_fbank(["--data_dir", str(archive / "data"), "--out_dir", str(tmp_path / "ark"),
                        "--archive", "ark", "--gcmvn"]) == 0
    zipped = ZipFeatureReader(archive / "feats" / "feats.scp")
    stored = kaldiio.load_scp(str(tmp_path / "ark" / "feats.scp"))
    assert sorted(stored) == sorted(zipped)
    for key in zipped:
        assert np.array_equal(stored[key], zipped[key])
    np.testing.assert_array_equal(np.load(tmp_path / "ark" / "gcmvn.npz")["mean"],
                                  np.load(archive / "feats" / "gcmvn.npz")["mean"])


def test_unreadable_utterance_is_reported_by_key_and_never_written(archive, tmp_path, caplog):
    import logging
    import shutil

    data = tmp_path / "data"
    shutil.copytree(archive / "data", data)
    (tmp_path / "broken.flac").write_bytes(b"not audio at all")
    lines = (data / "wav.scp").read_text().splitlines()
    lines[1] = f"{lines[1].split()[0]} {tmp_path / 'broken.flac'}"
    (data / "wav.scp").write_text("\n".join(lines) + "\n")
    broken_key = lines[1].split()[0]
    with caplog.at_level(logging.WARNING):
        assert write_fbank(["--data_dir", str(data), "--out_dir", str(tmp_path / "out")]) == 0
    assert f"utterance {broken_key}" in caplog.text
    listing = read_map(tmp_path / "out" / "feats.scp")[0]
    assert broken_key not in listing and len(listing) == len(lines) - 1
    with zipfile.ZipFile(tmp_path / "out" / "fbank80.zip") as z:
        assert f"{broken_key}.npy" not in z.namelist()
    assert broken_key not in read_map(tmp_path / "out" / "text")[0]
