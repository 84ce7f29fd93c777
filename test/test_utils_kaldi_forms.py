"""utils/ called the way Kaldi's and ESPnet's recipes call Kaldi's scripts of the same
names (their usage messages), on messy data directories (unsorted, CRLF, blank lines),
from a shell without the project's environment."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parent.parent / "utils"
# no activated environment, no PYTHONPATH, the system's python3: as a user's own shell
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
BARE = {"PATH": SYSTEM_PATH, "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHON": shutil.which("python3", path=SYSTEM_PATH) or "python3"}


def run(script, *args, stdin=None, cwd=None):
    return subprocess.run([str(UTILS / script), *map(str, args)], env=BARE, cwd=cwd,
                          input=stdin, capture_output=True, text=True)


def write(path, lines, crlf=False):
    path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode() + b"\n")


@pytest.fixture
def data(tmp_path):
    """Six utterances of three speakers (ids speaker-prefixed), files unsorted, CRLF in
    text, a blank line in wav.scp, durations; no feats.scp (features come later)."""
    d = tmp_path / "train"
    d.mkdir()
    utts = {"a-1": "a", "a-2": "a", "a-3": "a", "b-1": "b", "c-1": "c", "c-2": "c"}
    keys = list(reversed(utts))
    write(d / "wav.scp", [f"{k} /audio/{k}.flac" for k in keys[:3]] + [""] +
          [f"{k} /audio/{k}.flac" for k in keys[3:]])
    write(d / "text", [f"{k} words  of {k}" for k in keys], crlf=True)
    write(d / "utt2spk", [f"{k} {utts[k]}" for k in keys])
    write(d / "utt2dur", [f"{k} {1 + i * 0.5:.2f}" for i, k in enumerate(sorted(utts))])
    assert run("fix_data_dir.sh", d).returncode == 0  # sorted, spk2utt written
    return d


def lines(path):
    return Path(path).read_text().splitlines()


def keys(path):
    return [line.split()[0] for line in lines(path)]


def test_validate_takes_kaldis_options(data, tmp_path):
    ok = run("validate_data_dir.sh", "--no-feats", data)
    assert ok.returncode == 0, ok.stderr
    missing = run("validate_data_dir.sh", data)  # Kaldi requires feats.scp by default
    assert missing.returncode == 1 and "feats.scp" in missing.stderr and "--no-feats" in missing.stderr
    every = run("validate_data_dir.sh", "--no-feats", "--no-text", "--non-print", "--no-wav",
                "--no-spk-sort", data)
    assert every.returncode == 0, every.stderr
    bogus = run("validate_data_dir.sh", "--no-feat", data)
    assert bogus.returncode == 1 and "--no-feat" in bogus.stderr and "--no-feats" in bogus.stderr
    (data / "text").write_text((data / "text").read_text().replace("words", "wo\x07rds", 1))
    odd = run("validate_data_dir.sh", "--no-feats", data)
    assert odd.returncode == 1 and "non-printable" in odd.stderr
    assert run("validate_data_dir.sh", "--no-feats", "--non-print", data).returncode == 0
    (data / "text").write_text((data / "text").read_text().replace("wo\x07rds", "<s>", 1))
    assert "<s>" in run("validate_data_dir.sh", "--no-feats", data).stderr


def test_validate_wants_utt2spk_sorted_by_speaker_unless_told(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    write(d / "utt2spk", ["u1 s2", "u2 s1"])  # sorted by utterance, not by speaker
    write(d / "spk2utt", ["s1 u2", "s2 u1"])
    write(d / "text", ["u1 x", "u2 y"])
    write(d / "wav.scp", ["u1 /a.wav", "u2 /b.wav"])
    unsorted = run("validate_data_dir.sh", "--no-feats", d)
    assert unsorted.returncode == 1 and "--no-spk-sort" in unsorted.stderr
    assert run("validate_data_dir.sh", "--no-feats", "--no-spk-sort", d).returncode == 0


def test_subset_in_each_of_kaldis_forms(data, tmp_path):
    out = tmp_path / "out"
    for form, expected in (
        (["--first", data, 2, out / "first"], ["a-1", "a-2"]),
        (["--last", data, 2, out / "last"], ["c-1", "c-2"]),
        ([data, 3, out / "even"], ["a-3", "b-1", "c-2"]),  # subset_scp.pl's lines 3, 4, 6
        (["--shortest", data, 2, out / "shortest"], ["a-1", "a-2"]),
        (["--per-spk", data, 1, out / "per_spk"], ["a-1", "c-1"]),  # b has one: Kaldi's rule
    ):
        done = run("subset_data_dir.sh", *form)
        assert done.returncode == 0, (form, done.stderr)
        assert keys(form[-1] / "utt2spk") == expected, form
        assert keys(form[-1] / "text") == expected and keys(form[-1] / "wav.scp") == expected
        assert run("validate_data_dir.sh", "--no-feats", form[-1]).returncode == 0
    (tmp_path / "utts").write_text("b-1\nc-2 anything\n")
    assert run("subset_data_dir.sh", "--utt-list", tmp_path / "utts", data,
               out / "utts").returncode == 0
    assert keys(out / "utts" / "text") == ["b-1", "c-2"]
    (tmp_path / "spks").write_text("c\n")
    assert run("subset_data_dir.sh", "--spk-list", tmp_path / "spks", data,
               out / "spks").returncode == 0
    assert keys(out / "spks" / "utt2spk") == ["c-1", "c-2"]
    assert lines(out / "spks" / "spk2utt") == ["c c-1 c-2"]
    speakers = run("subset_data_dir.sh", "--speakers", data, 3, out / "speakers")
    assert speakers.returncode == 0
    chosen = {line.split()[1] for line in lines(out / "speakers" / "utt2spk")}
    per_speaker = {"a": 3, "b": 1, "c": 2}
    assert sum(per_speaker[s] for s in chosen) >= 3  # whole speakers up to 3 utterances
    assert len(lines(out / "speakers" / "utt2spk")) == sum(per_speaker[s] for s in chosen)


def test_subset_refuses_what_kaldi_refuses(data, tmp_path):
    too_many = run("subset_data_dir.sh", data, 7, tmp_path / "x")
    assert too_many.returncode == 1 and "6" in too_many.stderr
    swapped = run("subset_data_dir.sh", "--first", tmp_path / "x", data, 2)
    assert swapped.returncode == 1 and "whole number" in swapped.stderr
    unknown = run("subset_data_dir.sh", "--num", 2, data, tmp_path / "x")
    assert unknown.returncode == 1 and "--num" in unknown.stderr and "--first" in unknown.stderr


def test_split_scp_forms(data, tmp_path):
    scp = data / "wav.scp"
    parts = [tmp_path / f"wav.{i}.scp" for i in (1, 2, 3, 4)]
    assert run("split_scp.pl", scp, *parts).returncode == 0
    assert [len(lines(p)) for p in parts] == [2, 2, 1, 1]
    assert "".join(p.read_text() for p in parts) == scp.read_text()
    job = run("split_scp.pl", "-j", 4, 1, scp, tmp_path / "job1")  # 0-based job ids
    assert job.returncode == 0 and lines(tmp_path / "job1") == lines(parts[1])
    stdout = run("split_scp.pl", "-j", 4, 4, "--one-based", scp)
    assert stdout.returncode == 0 and stdout.stdout.splitlines() == lines(parts[3])
    assert run("split_scp.pl", "-j", 4, 4, scp).returncode == 1  # 0 <= job-id < num-jobs
    by_speaker = [tmp_path / "s1", tmp_path / "s2"]
    done = run("split_scp.pl", f"--utt2spk={data / 'utt2spk'}", data / "text", *by_speaker)
    assert done.returncode == 0, done.stderr
    # first a, b | c (4 | 2), then b moves over (3 | 3)
    assert keys(by_speaker[0]) == ["a-1", "a-2", "a-3"]
    assert keys(by_speaker[1]) == ["b-1", "c-1", "c-2"]
    unsupported = run("split_scp.pl", f"--utt2dur={data / 'utt2dur'}", scp, *parts)
    assert unsupported.returncode == 1 and "--utt2dur" in unsupported.stderr


def test_split_scp_moves_speakers_to_balance_parts(tmp_path):
    utt2spk = tmp_path / "utt2spk"
    write(utt2spk, [f"a-{i} a" for i in range(5)] + ["b-0 b", "c-0 c", "d-0 d"])
    outs = [tmp_path / "o1", tmp_path / "o2"]
    assert run("split_scp.pl", f"--utt2spk={utt2spk}", utt2spk, *outs).returncode == 0
    # first a, b | c, d (6 | 2); b moves over: 5 | 3
    assert {line.split()[1] for line in lines(outs[0])} == {"a"}
    assert [line.split()[1] for line in lines(outs[1])] == ["b", "c", "d"]


def test_filter_scp_field_exclude_stdin_and_verbatim_lines(tmp_path):
    scp = tmp_path / "in"
    scp.write_text("u1  s1 extra\nu2 s2\nu3 s1\n")
    ids = tmp_path / "ids"
    ids.write_text("s1 whatever\n")
    by_field = run("filter_scp.pl", "-f", 2, ids, scp)
    assert by_field.returncode == 0 and by_field.stdout == "u1  s1 extra\nu3 s1\n"
    excluded = run("filter_scp.pl", "--exclude", "-f", 2, ids, scp)
    assert excluded.stdout == "u2 s2\n"
    (tmp_path / "utts").write_text("u2\n")
    piped = run("filter_scp.pl", tmp_path / "utts", stdin=scp.read_text())
    assert piped.returncode == 0 and piped.stdout == "u2 s2\n"
    bad = run("filter_scp.pl", "-f", 4, ids, scp)
    assert bad.returncode == 1 and "field 4" in bad.stderr


def test_spk2utt_conversions_keep_kaldis_order_and_read_stdin(tmp_path):
    spk2utt = run("utt2spk_to_spk2utt.pl", stdin="u2 s2\nu1 s1\nu3 s2\n")
    assert spk2utt.returncode == 0 and spk2utt.stdout == "s2 u2 u3\ns1 u1\n"
    utt2spk = run("spk2utt_to_utt2spk.pl", stdin="s2 u2 u3\ns1 u1\n")
    assert utt2spk.stdout == "u2 s2\nu3 s2\nu1 s1\n"


def test_fix_data_dir_extra_files(data):
    write(data / "utt2extra", ["a-1 x", "zz-9 y", "c-2 z"])
    write(data / "spk2gender", ["a f", "b m", "c f", "zz m"])
    done = run("fix_data_dir.sh", "--utt_extra_files", "utt2extra", "--spk-extra-files=", data)
    assert done.returncode == 0, done.stderr
    # an utterance missing from an extra file is dropped everywhere, as Kaldi does
    assert keys(data / "utt2extra") == ["a-1", "c-2"] and keys(data / "text") == ["a-1", "c-2"]
    assert keys(data / "spk2gender") == ["a", "c"]
    assert run("validate_data_dir.sh", "--no-feats", data).returncode == 0


def test_copy_data_dir_affixes_and_validate_opts(data, tmp_path):
    done = run("copy_data_dir.sh", "--utt-prefix", "sp0.9-", "--spk-prefix=sp0.9-",
               "--validate-opts", "--non-print", data, tmp_path / "sp")
    assert done.returncode == 0, done.stderr  # no feats.scp in the source: not required
    assert lines(tmp_path / "sp" / "utt2spk")[0] == "sp0.9-a-1 sp0.9-a"
    assert keys(tmp_path / "sp" / "wav.scp")[0] == "sp0.9-a-1"
    bad = run("copy_data_dir.sh", "--validate-opts", "--strict", data, tmp_path / "x")
    assert bad.returncode == 1 and "--strict" in bad.stderr
    unknown = run("copy_data_dir.sh", "--utt-infix", "x", data, tmp_path / "x")
    assert unknown.returncode == 1 and "--utt-infix" in unknown.stderr


def test_combine_data_extra_files_and_skip_fix(data, tmp_path):
    assert run("copy_data_dir.sh", "--utt-prefix", "x-", "--spk-prefix", "x-", data,
               tmp_path / "x").returncode == 0
    for d in (data, tmp_path / "x"):
        write(d / "utt2extra", [f"{k} 1" for k in keys(d / "utt2spk")])
    done = run("combine_data.sh", "--extra-files", "utt2extra", tmp_path / "all", data,
               tmp_path / "x")
    assert done.returncode == 0, done.stderr
    assert len(lines(tmp_path / "all" / "utt2extra")) == 12
    assert run("validate_data_dir.sh", "--no-feats", tmp_path / "all").returncode == 0
    (tmp_path / "x" / "utt2extra").unlink()
    missing = run("combine_data.sh", "--extra-files", "utt2extra", "--skip-fix", "true",
                  tmp_path / "all2", data, tmp_path / "x")
    assert missing.returncode == 1 and "utt2extra" in missing.stderr


def test_scripts_run_from_any_directory_without_the_environment(data, tmp_path):
    done = run("validate_data_dir.sh", "--no-feats", "train", cwd=data.parent)
    assert done.returncode == 0, done.stderr
    assert "No module named" not in done.stderr
    assert run("validate_data_dir.sh", "--help").stdout.startswith("Usage:")
