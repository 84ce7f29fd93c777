"""tools/install_mini_sources.sh waits while another apt-get holds apt's lock (`make test`
and `make demo` started together on a fresh machine both run it), then goes on; other
apt-get failures are not waited on.

apt-get is replaced on PATH by a script that fails with apt's own lock message a given
number of times (the product calls the real one); espeak-ng and gettext are absent from
that PATH, so the script asks apt-get for them.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "install_mini_sources.sh"
LOCK_MESSAGE = ("E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 "
                "(apt-get)")


def run_with_apt_get(tmp_path, busy_calls, other_error=False, wait=30):
    """Runs the script (--optional) with an apt-get that reports the lock held on its
    first ``busy_calls`` calls; returns (completed process, apt-get's calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("bash", "grep", "mktemp", "sleep", "cat", "rm", "id"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} not found")
        (bin_dir / tool).symlink_to(found)
    calls = tmp_path / "calls"
    fake = bin_dir / "apt-get"
    fake.write_text(f"""#!{shutil.which('bash')}
echo "$*" >> {calls}
count=$(grep -c "" {calls})
if [ "$count" -le {busy_calls} ]; then echo "{LOCK_MESSAGE}" >&2; exit 100; fi
{'echo "E: The repository is not signed." >&2; exit 100' if other_error else 'exit 0'}
""")
    fake.chmod(0o755)
    environment = {"PATH": str(bin_dir), "APT_LOCK_POLL": "1", "APT_LOCK_WAIT": str(wait),
                   "HOME": os.environ.get("HOME", "/tmp")}
    done = subprocess.run([str(bin_dir / "bash"), str(SCRIPT), "--optional"],
                          env=environment, capture_output=True, text=True, timeout=120)
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_waits_for_the_lock_then_installs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the script runs apt-get through sudo when not root")
    done, calls = run_with_apt_get(tmp_path, busy_calls=2)
    assert done.returncode == 0, done.stderr
    assert "another apt-get holds apt's lock; waiting" in done.stderr
    assert "apt-get update failed" not in done.stderr
    # update refused twice, then run; then the install of what is missing
    assert [call.split()[0] for call in calls] == ["update", "update", "update", "install"]
    assert "Acquire::Languages=en,de" in calls[2]  # the English and German descriptions
    assert "espeak-ng" in calls[-1] and "gettext" in calls[-1]


def test_gives_up_after_the_wait_and_on_other_errors(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the script runs apt-get through sudo when not root")
    done, calls = run_with_apt_get(tmp_path / "held", busy_calls=100, wait=2)
    assert "apt-get update failed" in done.stderr and LOCK_MESSAGE in done.stderr
    assert 2 <= len(calls) <= 4  # polled about every second for 2 s, then gave up
    done, calls = run_with_apt_get(tmp_path / "unsigned", busy_calls=0, other_error=True)
    assert "The repository is not signed" in done.stderr
    assert "waiting" not in done.stderr and len(calls) == 1  # not waited on
