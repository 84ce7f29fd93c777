"""The notebook demo (egs2/mini_en/asr1/demo.ipynb) runs top to bottom, offline."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from espnet2_mtla.mini import debian_text

NOTEBOOK = Path(__file__).resolve().parent.parent / "egs2" / "mini_en" / "asr1" / "demo.ipynb"


def _have_translations():
    try:
        return bool(debian_text.translation_files())
    except FileNotFoundError:
        return False


@pytest.mark.skipif(shutil.which("espeak-ng") is None or not _have_translations(),
                    reason="needs espeak-ng and Translation-en: tools/install_mini_sources.sh")
def test_notebook_runs_top_to_bottom(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(output.get("text", "") for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.get("outputs", []))
    assert "MTLA s=2 holds" in outputs and "x less cache than MHA" in outputs
    work = tmp_path / "demo_work"
    assert (work / "demo.png").stat().st_size > 1000
    cache = {name: json.loads((work / f"exp_{name}" / "decode_test" / "efficiency.json")
                              .read_text())["peak_kv_cache_bytes"] for name in ("mha", "mtla_s2")}
    # per token and layer: MHA 2 * 64 = 128 numbers, MTLA s=2 (32 + 8) / 2 = 20
    assert 4.0 < cache["mha"] / cache["mtla_s2"] < 8.0
