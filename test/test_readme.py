"""README's examples run as written: its Python snippets as they stand, and its training
and decoding commands in a tiny recipe folder after stages 1-6 (CPU, about a minute)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_recipe_template import make_recipe

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def block_starting(language, start):
    found = [block for block in blocks(language) if block.startswith(start)]
    assert len(found) == 1, f"README has {len(found)} {language} blocks starting {start!r}"
    return found[0]


@pytest.mark.parametrize("start", ["import torch\nfrom espnet2_mtla.attention",
                                   "import torch\nimport espnet2_mtla.hf"])
def test_python_snippets_run_as_they_stand(start):
    code = block_starting("python", start)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    recipe = make_recipe(tmp_path_factory.mktemp("readme"), "--attn_confs mtla_s2")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["bash", "run.sh", "--stop_stage", "6"], cwd=recipe, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return recipe


def run_block(recipe, block):
    # the environment's python first on PATH, as after . tools/activate_python.sh
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-euc", block], cwd=recipe, env=env, capture_output=True,
                          text=True, timeout=900)


def test_training_and_decoding_commands_run_as_written(prepared):
    train = block_starting("sh", "python -m espnet2_mtla.bin.train --config")
    done = run_block(prepared, train)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (prepared / "exp/mtla_mtla_s2/valid.acc.ave.pth").exists()
    decode = block_starting("sh", "python -m espnet2_mtla.bin.inference")
    done = run_block(prepared, decode)
    assert done.returncode == 0, done.stderr[-3000:]
    text = prepared / "exp/mtla_mtla_s2/decode_test/1best_recog/text"
    assert len(text.read_text().splitlines()) == 4
