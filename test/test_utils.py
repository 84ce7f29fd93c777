"""The Kaldi-style utilities in utils/ (data directories, run.pl, parse_options.sh)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from espnet2_mtla.data.datadir import fix_data_dir, validate_data_dir
from espnet2_mtla.data.kaldi_files import read_map, split_scp

UTILS = Path(__file__).resolve().parent.parent / "utils"
ENV = {**os.environ, "PYTHON": sys.executable,
       "PYTHONPATH": str(UTILS.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def write(path, text, crlf=False):
    path.write_bytes(text.replace("\n", "\r\n" if crlf else "\n").encode())


def messy_dir(root):
    """Unsorted, CRLF, blank lines, a duplicate key, an utterance missing from text,
    an empty transcript, transcripts with spaces."""
    d = root / "data"
    d.mkdir()
    write(d / "wav.scp", "u3 /a/u3.flac\nu1 /a/u1.flac\n\nu2 /a/u2.flac\nu4 /a/u4.flac\n", crlf=True)
    write(d / "text", "u2 hello  big world\nu1 first one\nu1 duplicate line\nu4\n")
    write(d / "utt2spk", "u3 s2\nu2 s1\nu1 s1\nu4 s2\n")
    return d


def test_read_map_tolerates_crlf_blank_lines_and_reports_duplicates(tmp_path):
    d = messy_dir(tmp_path)
    wav, problems = read_map(d / "wav.scp")
    assert wav == {"u3": "/a/u3.flac", "u1": "/a/u1.flac", "u2": "/a/u2.flac", "u4": "/a/u4.flac"}
    text, problems = read_map(d / "text", allow_empty_values=True)
    assert text["u2"] == "hello  big world" and text["u1"] == "first one"
    assert any("duplicate key u1" in p for p in problems)


def test_validate_reports_and_fix_repairs(tmp_path):
    d = messy_dir(tmp_path)
    problems = validate_data_dir(d, no_feats=True)
    assert any("not sorted" in p for p in problems)
    assert any("text" in p and "missing" in p for p in problems)  # u3 has no text
    assert any("empty transcripts" in p for p in problems)
    report = fix_data_dir(d)
    assert any("dropped 2 of 4" in line for line in report)  # u3 (no text), u4 (empty)
    assert validate_data_dir(d, no_feats=True) == []
    assert (d / "text").read_text() == "u1 first one\nu2 hello  big world\n"
    assert (d / "spk2utt").read_text() == "s1 u1 u2\n"
    assert (d / "wav.scp").read_bytes() == b"u1 /a/u1.flac\nu2 /a/u2.flac\n"
    assert (d / ".backup" / "text").exists()


def test_every_per_utterance_file_is_kept_in_step(tmp_path):
    """A speech-translation directory's source transcripts (text.en, as MuST-C and
    mini_en_de write them) are per-utterance files like text: validation checks their
    keys, fixing drops the same utterances from them, and stored features keep them."""
    from espnet2_mtla.data.datadir import copy_utterance_files

    d = messy_dir(tmp_path)
    write(d / "text.en", "u1 one\nu2 two\nu3 three\nu4 four\n")
    write(d / "utt2lang", "u1 de\nu2 de\nu3 de\n")  # u4 missing
    assert any("utt2lang" in p and "missing" in p for p in validate_data_dir(d, no_feats=True))
    fix_data_dir(d)
    assert (d / "text.en").read_text() == "u1 one\nu2 two\n"
    assert validate_data_dir(d, no_feats=True) == []
    out = tmp_path / "dump"
    out.mkdir()
    copy_utterance_files(d, out, {"u2"})
    assert (out / "text.en").read_text() == "u2 two\n" and (out / "utt2lang").exists()
    assert not (out / "wav.scp").exists()


def test_shell_wrappers(tmp_path):
    d = messy_dir(tmp_path)
    run = subprocess.run([UTILS / "validate_data_dir.sh", d], env=ENV, capture_output=True,
                         text=True)
    assert run.returncode == 1 and "not sorted" in run.stderr
    run = subprocess.run([UTILS / "fix_data_dir.sh", d], env=ENV, capture_output=True, text=True)
    assert run.returncode == 0 and "dropped" in run.stderr
    assert subprocess.run([UTILS / "validate_data_dir.sh", "--no-feats", d], env=ENV).returncode == 0
    spk2utt = subprocess.run([UTILS / "utt2spk_to_spk2utt.pl", d / "utt2spk"], env=ENV,
                             capture_output=True, text=True).stdout
    assert spk2utt == "s1 u1 u2\n"
    keys = tmp_path / "keys"
    keys.write_text("u2\n")
    kept = subprocess.run([UTILS / "filter_scp.pl", keys, d / "text"], env=ENV,
                          capture_output=True, text=True).stdout
    assert kept == "u2 hello  big world\n"


@pytest.mark.parametrize("script", ["validate_data_dir.sh", "fix_data_dir.sh"])
def test_a_byte_that_is_not_utf8_is_named_by_file_and_line(tmp_path, script):
    d = messy_dir(tmp_path)
    (d / "text").write_bytes(b"u1 first one\nu2 caf\xe9 au lait\nu3 x\n")
    run = subprocess.run([UTILS / script, d], env=ENV, capture_output=True, text=True)
    assert run.returncode == 1
    assert f"{d}/text:2: byte 0xe9 at column 7 is not UTF-8" in run.stderr
    assert "Traceback" not in run.stderr


def test_split_scp_sizes_within_one(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"u{i:02d} /x/{i}.wav\n" for i in range(10)))
    outputs = [tmp_path / f"part{j}" for j in range(3)]
    split_scp(scp, outputs)
    sizes = [len(p.read_text().splitlines()) for p in outputs]
    assert sizes == [4, 3, 3]
    assert "".join(p.read_text() for p in outputs) == scp.read_text()
    with pytest.raises(ValueError):
        split_scp(scp, [tmp_path / f"x{j}" for j in range(11)])


def test_run_pl_array_jobs_and_failure_names_the_log(tmp_path):
    log = tmp_path / "log" / "job.JOB.log"
    ok = subprocess.run([UTILS / "run.pl", "JOB=1:3", log, "echo", "job JOB done"],
                        capture_output=True, text=True)
    assert ok.returncode == 0
    for job in (1, 2, 3):
        text = (tmp_path / "log" / f"job.{job}.log").read_text()
        assert f"job {job} done" in text and "Ended (code 0)" in text
    bad = subprocess.run([UTILS / "run.pl", "JOB=1:3", log,
                          "if [ JOB = 2 ]; then echo broken; exit 3; fi"],
                         capture_output=True, text=True)
    assert bad.returncode != 0
    assert "1 / 3 failed" in bad.stderr and "job.2.log" in bad.stderr
    assert "Ended (code 3)" in (tmp_path / "log" / "job.2.log").read_text()


def test_run_pl_gives_each_running_job_its_own_gpus(tmp_path):
    log = tmp_path / "log" / "job.JOB.log"
    command = ("echo start $(date +%s.%N) gpus=$CUDA_VISIBLE_DEVICES; sleep 0.4; "
               "echo end $(date +%s.%N)")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "3,5,6,7"}
    run = subprocess.run([UTILS / "run.pl", "--gpu", "2", "JOB=1:5", log, command],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    spans = []
    for job in range(1, 6):
        lines = (tmp_path / "log" / f"job.{job}.log").read_text().splitlines()
        start = next(line for line in lines if line.startswith("start")).split()
        end = next(line for line in lines if line.startswith("end")).split()
        gpus = start[2].removeprefix("gpus=").split(",")
        assert len(gpus) == 2 and set(gpus) <= {"3", "5", "6", "7"}
        spans.append((float(start[1]), float(end[1]), set(gpus)))
    assert len({frozenset(g) for _, _, g in spans}) == 2  # both pairs were used
    for i, (start_a, end_a, gpus_a) in enumerate(spans):
        for start_b, end_b, gpus_b in spans[i + 1:]:
            if start_a < end_b and start_b < end_a:  # ran at the same time
                assert not gpus_a & gpus_b
    if shutil.which("nvidia-smi") is None:  # a machine without GPUs: a clear error
        no_gpu = subprocess.run([UTILS / "run.pl", "--gpu", "1", "JOB=1:2", log, "true"],
                                capture_output=True, text=True,
                                env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        assert no_gpu.returncode != 0 and "GPU(s) found" in no_gpu.stderr


FAKE_SBATCH = """#!/usr/bin/env bash
# stands in for Slurm's sbatch on a machine without Slurm: records its arguments, then runs
# the array tasks of the script (the last argument) one after the other
echo "$@" > "$SBATCH_RECORD"
range=$(printf '%s\\n' "$@" | sed -n 's/^--array=\\([0-9]*-[0-9]*\\).*/\\1/p')
code=0
for task in $(seq "${range%-*}" "${range#*-}"); do
    SLURM_ARRAY_TASK_ID=$task bash "${@: -1}" || code=1
done
exit $code
"""


def test_slurm_pl_submits_an_array_job_and_names_failed_logs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    (tmp_path / "slurm.conf").write_text("--partition=gpu  # site option\n")
    env = {**ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "SBATCH_RECORD": str(tmp_path / "sbatch_args")}
    log = tmp_path / "log" / "decode.JOB.log"
    ok = subprocess.run([UTILS / "slurm.pl", "--gpu", "1", "--mem", "8G", "--config",
                         tmp_path / "slurm.conf", "JOB=1:3", log, "echo", "task JOB"],
                        env=env, capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    args = (tmp_path / "sbatch_args").read_text().split()
    assert "--array=1-3" in args and "--gres=gpu:1" in args and "--mem=8G" in args
    assert "--partition=gpu" in args and "--wait" in args
    for job in (1, 2, 3):
        text = (tmp_path / "log" / f"decode.{job}.log").read_text()
        assert f"task {job}" in text and "Ended (code 0)" in text
    bad = subprocess.run([UTILS / "slurm.pl", "JOB=1:2", log,
                          "if [ JOB = 2 ]; then exit 4; fi"],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "1 / 2 failed" in bad.stderr
    assert "decode.2.log" in bad.stderr
    assert "Ended (code 4)" in (tmp_path / "log" / "decode.2.log").read_text()


def test_parse_options(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text(
        "nj=1\nuse_gpu=false\nname=none\nhelp_message='usage: script.sh'\n"
        f". {UTILS}/parse_options.sh\n"
        'echo "$nj $use_gpu $name | $*"\n'
    )
    run = lambda *args: subprocess.run(["bash", script, *args], capture_output=True, text=True)
    out = run("--nj", "4", "--use-gpu", "true", "--name=a b", "data", "exp")
    assert out.stdout.strip() == "4 true a b | data exp"
    assert run("--nbest", "3").returncode != 0 and "unknown option --nbest" in run("--nbest", "3").stderr
    assert run("--use_gpu", "yes").returncode != 0
    assert "usage: script.sh" in run("--help").stderr


def clean_dir(root, name, keys, spk="s", with_audio=False):
    import numpy as np
    import soundfile

    d = root / name
    d.mkdir(parents=True)
    lines = {"wav.scp": [], "text": [], "utt2spk": []}
    for index, key in enumerate(keys):
        audio = d / f"{key}.wav"
        if with_audio:
            soundfile.write(audio, np.zeros(1600 * (index + 1), dtype="float32"), 16000)
        lines["wav.scp"].append(f"{key} {audio}")
        lines["text"].append(f"{key} words of {key}")
        lines["utt2spk"].append(f"{key} {spk}{index % 2}")
    for file, rows in lines.items():
        (d / file).write_text("\n".join(sorted(rows)) + "\n")
    return d


def test_copy_with_prefix_combine_and_duplicate_keys(tmp_path):
    from espnet2_mtla.data.datadir import combine_data, copy_data_dir

    a = clean_dir(tmp_path, "a", ["u1", "u2"])
    write(a / "spk2gender", "s0 f\ns1 m\n")
    copy_data_dir(a, tmp_path / "sp", utt_prefix="sp0.9-", spk_prefix="sp0.9-")
    assert read_map(tmp_path / "sp" / "utt2spk")[0] == {"sp0.9-u1": "sp0.9-s0",
                                                         "sp0.9-u2": "sp0.9-s1"}
    # per-speaker files follow the renamed speakers (as Kaldi's copy_data_dir.sh)
    assert read_map(tmp_path / "sp" / "spk2gender")[0] == {"sp0.9-s0": "f", "sp0.9-s1": "m"}
    assert validate_data_dir(tmp_path / "sp", no_feats=True, no_spk_sort=True) == []
    combine_data(tmp_path / "all", [a, tmp_path / "sp"])
    assert len(read_map(tmp_path / "all" / "text")[0]) == 4
    assert validate_data_dir(tmp_path / "all", no_feats=True, no_spk_sort=True) == []
    with pytest.raises(ValueError, match="u1 is in both"):
        combine_data(tmp_path / "bad", [a, a])


def test_subset_and_utt2dur(tmp_path):
    from espnet2_mtla.data.datadir import get_utt2dur
    from espnet2_mtla.data.subset import subset_data_dir

    d = clean_dir(tmp_path, "d", [f"u{i}" for i in range(6)], with_audio=True)
    subset_data_dir(d, tmp_path / "first", 2, "first")
    assert list(read_map(tmp_path / "first" / "text")[0]) == ["u0", "u1"]
    subset_data_dir(d, tmp_path / "even", 3)
    assert list(read_map(tmp_path / "even" / "text")[0]) == ["u2", "u3", "u5"]  # subset_scp.pl's
    assert validate_data_dir(tmp_path / "even", no_feats=True, no_spk_sort=True) == []
    run = subprocess.run([UTILS / "data" / "get_utt2dur.sh", d], env=ENV, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    assert read_map(d / "utt2dur")[0]["u2"] == "0.300"
    (d / "u5.wav").write_bytes(b"broken")
    with pytest.raises(ValueError, match="u5"):
        get_utt2dur(d)


def test_speed_perturbation_renames_keys_and_changes_duration(tmp_path):
    import numpy as np
    import soundfile

    src = tmp_path / "src"
    src.mkdir()
    fs = 16000
    t = np.arange(fs) / fs  # 1 s of 440 Hz
    soundfile.write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), fs)
    write(src / "wav.scp", f"rec1 {tmp_path / 'a.wav'}\n")
    write(src / "segments", "utt1 rec1 0.00 0.50\nutt2 rec1 0.50 1.00\n")
    write(src / "text", "utt1 first half\nutt2 second half\n")
    write(src / "utt2spk", "utt1 s1\nutt2 s1\n")
    write(src / "spk2gender", "s1 f\n")
    # features of the unperturbed audio: they no longer hold for the perturbed copy
    write(src / "feats.scp", "utt1 feats.ark:5\nutt2 feats.ark:900\n")
    write(src / "utt2num_frames", "utt1 50\nutt2 50\n")
    write(src / "cmvn.scp", "s1 cmvn.ark:3\n")
    done = subprocess.run([UTILS / "perturb_data_dir_speed.sh", "0.9", src, tmp_path / "sp"],
                          env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    sp = tmp_path / "sp"
    assert read_map(sp / "spk2gender")[0] == {"sp0.9-s1": "f"}
    assert not [n for n in ("feats.scp", "utt2num_frames", "cmvn.scp") if (sp / n).exists()]
    assert read_map(sp / "text")[0] == {"sp0.9-utt1": "first half", "sp0.9-utt2": "second half"}
    assert read_map(sp / "utt2spk")[0] == {"sp0.9-utt1": "sp0.9-s1", "sp0.9-utt2": "sp0.9-s1"}
    assert read_map(sp / "segments")[0]["sp0.9-utt2"] == "sp0.9-rec1 0.556 1.111"
    assert read_map(sp / "wav.scp")[0]["sp0.9-rec1"].endswith("|")
    assert validate_data_dir(sp, no_feats=True) == []
    # the pipe plays the audio at 0.9x: 1/0.9 as long, the tone at 0.9 x 440 Hz (the pipe
    # runs `python` from PATH, as in a recipe after path.sh)
    env = {**ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "espnet2_mtla.bin.format_audio", "--fs", "16000",
                           "--audio_format", "wav", sp, tmp_path / "out"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    samples = read_map(tmp_path / "out" / "utt2num_samples")[0]
    assert samples == {"sp0.9-utt1": "8896", "sp0.9-utt2": "8880"}
    audio, _ = soundfile.read(read_map(tmp_path / "out" / "wav.scp")[0]["sp0.9-utt1"])
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * fs / len(audio) - 396) < 3


def test_audio_formatted_into_an_ark_reads_back_through_espnet(tmp_path):
    import numpy as np
    import soundfile
    from espnet2.train.dataset import ESPnetDataset

    from espnet2_mtla.bin.format_audio import load, main as format_audio

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    originals = {}
    for key in ("a1", "a2"):
        audio = (0.3 * rng.standard_normal(8000)).clip(-1, 1)
        soundfile.write(tmp_path / f"{key}.flac", audio, 16000)
        originals[key] = soundfile.read(tmp_path / f"{key}.flac", dtype="float32")[0]
    write(src / "wav.scp", "".join(f"{k} {tmp_path / k}.flac\n" for k in originals))
    write(src / "text", "a1 one\na2 two\n")
    write(src / "utt2spk", "a1 s\na2 s\n")
    assert format_audio(["--audio_format", "ark", str(src), str(tmp_path / "out")]) in (0, None)
    wav_scp = read_map(tmp_path / "out" / "wav.scp")[0]
    assert all(".ark:" in value for value in wav_scp.values())
    assert read_map(tmp_path / "out" / "utt2num_samples")[0] == {"a1": "8000", "a2": "8000"}
    dataset = ESPnetDataset([(str(tmp_path / "out" / "wav.scp"), "speech", "kaldi_ark")])
    for key, original in originals.items():
        speech = dataset[key][1]["speech"]
        assert np.abs(speech - original).max() < 1e-4  # 16-bit samples, as floats
        assert np.abs(load(wav_scp[key], 16000) - original).max() < 1e-4
