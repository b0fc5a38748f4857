"""``--compile`` (runtime.compile_model): the compiled model computes what the eager one does.

Slow: torch.compile on a CPU compiles C++ kernels (more than ten minutes for this small model on the
shared 2-core machine this was written on), so it runs only with ``-m slow``.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

from vidtok_cli.arch import build_model
from vidtok_cli.arch.config import VidTokConfig
from vidtok_cli.runtime import compile_model


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_model_matches_eager() -> None:
    torch.manual_seed(0)
    module = build_model(VidTokConfig(ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=4)).eval()
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = module.decode(module.encode(x).latent)
        compile_model(SimpleNamespace(module=module))  # anything with .module
        out = module.decode(module.encode(x).latent)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
