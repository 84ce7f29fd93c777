"""bench/ddp_check.py on 1 and 2 CPU processes (gloo): equal losses at the same global
batch, and checkpoints that resume across process counts (the GPU run uses NCCL)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from espnet2.train.distributed_utils import free_port

ROOT = Path(__file__).resolve().parent.parent


def launch(processes, tmp_path, name, *extra):
    out = tmp_path / f"{name}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
           "--master_port", str(free_port()), str(ROOT / "bench" / "ddp_check.py"),
           "--tiny", "--frames", "20", "--tokens", "8", "--global_batch", "4", "--steps", "5",
           "--save_at", "2", "--out", str(out), *map(str, extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["world_size"] == processes
    return {int(step): loss for step, loss in record["losses"].items()}


def test_two_processes_match_one_and_checkpoints_resume_across(tmp_path):
    one = launch(1, tmp_path, "one", "--save", tmp_path / "one.pt")
    two = launch(2, tmp_path, "two", "--save", tmp_path / "two.pt")
    assert sorted(one) == list(range(5))
    assert len(set(round(v, 3) for v in one.values())) > 1  # the loss moves
    for step in one:
        assert abs(one[step] - two[step]) < 1e-4 * abs(one[step])
    two_on_one = launch(1, tmp_path, "two_on_one", "--resume", tmp_path / "two.pt")
    assert sorted(two_on_one) == [3, 4]  # continues after the saved step
    for step, loss in two_on_one.items():
        assert abs(loss - two[step]) < 1e-4 * abs(loss)
