"""The package installs without the ESPnet stack: setup.py's install_requires and [hf]
extra need only torch, numpy and transformers, and a fresh virtual environment holding
just those (and what they depend on) imports the attention modules and the Transformers
classes and runs README's two Python snippets.

The environment is built without a download: a new venv whose site-packages links the
installed distributions of torch and transformers and their dependency closure (read from
their metadata), plus this checkout; espnet, s3prl and torchaudio are absent from it.
"""

import ast
import importlib.metadata as metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def setup_requirements():
    """(install_requires, extras_require) as setup.py declares them."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("install_requires", "extras_require"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found["install_requires"], found["extras_require"]


def closure(names):
    """The installed distributions ``names`` need (markers evaluated, no extras)."""
    seen, todo = {}, list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform package that is not installed here
        seen[name] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_install_requires_are_torch_and_numpy_and_hf_adds_transformers():
    install, extras = setup_requirements()
    assert sorted(Requirement(r).name for r in install) == ["numpy", "torch"]
    assert not any(Requirement(r).specifier.__str__().startswith("==") for r in install)
    assert [Requirement(r).name for r in extras["hf"]] == ["transformers"]
    espnet = {Requirement(r).name for r in extras["espnet"]}
    assert {"espnet", "s3prl", "torchaudio"} <= espnet


@pytest.fixture(scope="module")
def minimal_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("minimal_env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")],
                   check=True)
    python = root / "venv" / "bin" / "python"
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    install, extras = setup_requirements()
    wanted = [Requirement(r).name for r in install + extras["hf"]]
    linked = set()
    for dist in closure(wanted).values():
        here = Path(dist.locate_file(""))  # the site-packages folder it is installed in
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if top not in linked and (here / top).exists():
                (site / top).symlink_to(here / top)
                linked.add(top)
    assert {"torch", "transformers", "numpy"} <= linked
    (site / "espnet2_mtla_checkout.pth").write_text(f"{ROOT}\n")
    return python


def run(python, code):
    return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=900,
                          cwd=ROOT.parent, env={"PATH": os.environ["PATH"],
                                                "HOME": os.environ.get("HOME", "/tmp")})


def test_the_minimal_env_lacks_the_espnet_stack(minimal_env):
    for module in ("espnet", "espnet2", "s3prl", "torchaudio", "kaldiio"):
        done = run(minimal_env, f"import {module}")
        assert done.returncode != 0 and "No module named" in done.stderr, module


@pytest.mark.parametrize("start", ["import torch\nfrom espnet2_mtla.attention",
                                   "import torch\nimport espnet2_mtla.hf"])
def test_readme_snippets_run_with_only_torch_and_transformers(minimal_env, start):
    snippets = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S)
                if b.startswith(start)]
    assert len(snippets) == 1
    done = run(minimal_env, snippets[0])
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("module", ["espnet2_mtla.attention.choices",
                                    "espnet2_mtla.tasks.decoder_only"])
def test_espnet_parts_name_the_extra_to_install(minimal_env, module):
    done = run(minimal_env, f"import {module}")
    assert done.returncode != 0 and "pip install 'espnet2_mtla[espnet]'" in done.stderr
