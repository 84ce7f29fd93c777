"""The Triton latent-cache decode kernel (CPU: Triton's interpreter; GPU: skipped without CUDA)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import padded_batch

HERE = Path(__file__).resolve().parent
pytest.importorskip("triton", reason="triton is not installed (extra 'triton')")


def test_kernel_under_the_triton_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": f"{HERE}:{HERE.parent}"}
    run = subprocess.run([sys.executable, str(HERE / "kernel_checks.py"), "cpu"], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "kernel checks passed" in run.stdout


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@gpu
def test_kernel_on_the_gpu():
    sys.path.insert(0, str(HERE))
    import kernel_checks

    kernel_checks.main("cuda")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_module_decoding_with_the_kernel_equals_the_torch_path(dtype):
    from espnet2_mtla.attention import build_attention
    from espnet2_mtla.kernels import kernels_set

    torch.manual_seed(0)
    module = build_attention("mtla", 256, 8, down_rate=3, kv_lora_rank=256,
                             qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64)
    module = module.eval().to("cuda", dtype)
    x = torch.randn(4, 50, 256, device="cuda", dtype=dtype)
    outputs = {}
    for enabled in (True, False):
        cache = module.make_cache(4)
        with kernels_set(enabled), torch.no_grad():
            steps = [module(x[:, :20], cache=cache)]
            steps += [module(x[:, t : t + 1], cache=cache) for t in range(20, 50)]
        outputs[enabled] = torch.cat(steps, 1).float()
    with torch.no_grad():
        parallel = module(x).float()
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    for out in outputs.values():
        assert ((out - parallel).norm() / parallel.norm()) < tolerance
