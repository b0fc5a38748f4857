"""``--compile`` (runtime.compile_model): the compiled model computes what the eager one does.

The default test traces the model with the ``aot_eager`` backend: the same graphs (and graph breaks) as
``inductor``, without generating C++ kernels, which takes more than ten minutes for a small model on a
2-core CPU; the inductor test runs only where ``VIDTOK_TEST_INDUCTOR=1`` asks for it.
"""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import pytest
import torch

from vidtok_cli.arch import build_model
from vidtok_cli.arch.config import VidTokConfig
from vidtok_cli.runtime import compile_model


def _compiled_matches_eager(backend: str) -> None:
    torch.manual_seed(0)
    module = build_model(VidTokConfig(ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=4)).eval()
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = module.decode(module.encode(x).latent)
        compile_model(SimpleNamespace(module=module), backend=backend)  # anything with .module
        assert all(hasattr(part, "_compiled_call_impl") for part in module.children())
        out = module.decode(module.encode(x).latent)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_compiled_model_matches_eager() -> None:
    torch._dynamo.reset()
    _compiled_matches_eager("aot_eager")


@pytest.mark.skipif(os.environ.get("VIDTOK_TEST_INDUCTOR") != "1", reason="inductor on CPU takes minutes")
@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_inductor_compiled_model_matches_eager() -> None:
    torch._dynamo.reset()
    _compiled_matches_eager("inductor")
