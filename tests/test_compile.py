"""``--compile`` (runtime.compile_model): the compiled model computes what the eager one does.

The default test traces the model with the ``aot_eager`` backend: the same graphs (and graph breaks) as
``inductor``, without generating C++ kernels, which takes more than ten minutes for a small model on a
2-core CPU; the inductor test runs only where ``VIDTOK_TEST_INDUCTOR=1`` asks for it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vidtok_cli import runtime
from vidtok_cli.arch import build_model
from vidtok_cli.arch.config import VidTokConfig
from vidtok_cli.arch.layers import StreamState
from vidtok_cli.errors import UsageError
from vidtok_cli.runtime import compile_model

from .helpers import assert_one_line_error, cli, make_video


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


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_encoder_and_decoder_trace_as_one_graph_each(version: str) -> None:
    """No graph break: the inference-only paths (prepacked oneDNN kernels, out= writes into cache buffers,
    phase convolutions with remembered kernels) step aside while torch.compile traces."""
    cfg = VidTokConfig(
        ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=4, version=version,
        interpolation_mode="trilinear" if version == "v1.1" else "nearest",
    )  # fmt: skip
    module = build_model(cfg).eval()
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        z = module.encode(x).latent
        for part, arg in ((module.encoder, x), (module.decoder, z)):
            report = torch._dynamo.explain(part)(arg, StreamState(final=True))
            assert (report.graph_count, report.graph_break_count) == (1, 0), report.break_reasons


def test_compiled_model_matches_eager() -> None:
    torch._dynamo.reset()
    _compiled_matches_eager("aot_eager")


@pytest.mark.skipif(os.environ.get("VIDTOK_TEST_INDUCTOR") != "1", reason="inductor on CPU takes minutes")
@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_inductor_compiled_model_matches_eager() -> None:
    torch._dynamo.reset()
    _compiled_matches_eager("inductor")


def test_compile_mode_auto_is_cuda_graphs_on_cuda_only() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert runtime.resolve_compile_mode("auto", cpu) == "default"
    assert runtime.resolve_compile_mode("auto", cuda) == "reduce-overhead"
    assert runtime.resolve_compile_mode("max-autotune", cpu) == "max-autotune"
    assert runtime.resolve_compile_mode("max-autotune-no-cudagraphs", cuda) == "max-autotune-no-cudagraphs"
    assert runtime.uses_cuda_graphs("reduce-overhead", cuda) and runtime.uses_cuda_graphs(
        "max-autotune", cuda
    )
    assert not runtime.uses_cuda_graphs("max-autotune-no-cudagraphs", cuda)
    assert not runtime.uses_cuda_graphs("default", cuda) and not runtime.uses_cuda_graphs("max-autotune", cpu)
    with pytest.raises(UsageError, match="CUDA graphs need a CUDA device"):
        runtime.resolve_compile_mode("reduce-overhead", cpu)
    with pytest.raises(UsageError, match="unknown --compile-mode 'fast'"):
        runtime.resolve_compile_mode("fast", cuda)
    with pytest.raises(UsageError, match="needs --compile"):
        runtime.check_compile_mode("default", compile=False)
    runtime.check_compile_mode("auto", compile=False)  # the default is fine without --compile


def test_outside_graph_pool_copies_results_and_the_state_the_call_updated() -> None:
    made: dict[str, torch.Tensor] = {}
    cached = torch.ones(2)

    def step(x: torch.Tensor, state: StreamState) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        made["cache"], made["window"], made["out"], made["extra"] = x * 2, x + 1, x * 3, x * 4
        state.caches["conv"] = made["cache"]
        state.caches["interp"] = (made["window"], None, 5)
        state.counters["frames"] = 3
        return made["out"], {"extra": made["extra"]}

    copied: list[torch.Tensor] = []

    def copy(t: torch.Tensor) -> torch.Tensor:
        copied.append(t)
        return t.clone()

    x, state = torch.arange(3.0), StreamState(caches={"old": cached})
    out, extra = runtime.outside_graph_pool(step, copy)(x, state)
    for name, got in (("cache", state.caches["conv"]), ("out", out), ("extra", extra["extra"])):
        assert got is not made[name] and torch.equal(got, made[name])
    window, prev, start = state.caches["interp"]
    assert window is not made["window"] and torch.equal(window, made["window"]) and (prev, start) == (None, 5)
    assert state.counters == {"frames": 3} and torch.equal(state.caches["old"], cached)
    assert not any(t is x for t in copied)  # the caller's input is never replaced


def test_compile_with_cuda_graphs_installs_the_copy_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA, --compile (auto: reduce-overhead) copies each compiled part's results out of the graph
    pool; the wiring is checked on the CPU with a device that claims to be CUDA and a copy that counts
    (aot_eager does not take inductor's mode)."""
    torch._dynamo.reset()
    copied: list[torch.Tensor] = []
    monkeypatch.setattr(runtime, "_cuda_clone", lambda t: copied.append(t) or t.clone())
    monkeypatch.setattr(runtime, "_module_device", lambda tok: torch.device("cuda"))
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)).eval()
    x = torch.rand(3, 4)
    with torch.no_grad():
        ref = module(x)
        compile_model(SimpleNamespace(module=module), backend="aot_eager")
        out = module(x)
    torch.testing.assert_close(out, ref)
    assert [tuple(t.shape) for t in copied] == [(3, 4), (3, 2)] and out is not copied[-1]
    copied.clear()
    monkeypatch.setattr(runtime, "_module_device", lambda tok: torch.device("cpu"))
    other = torch.nn.Sequential(torch.nn.Linear(4, 4))
    compile_model(SimpleNamespace(module=other), backend="aot_eager")
    with torch.no_grad():
        other(x)
    assert copied == []  # no CUDA graphs, no copies
    with pytest.raises(UsageError, match="CUDA graphs"):
        compile_model(SimpleNamespace(module=other), backend="aot_eager", mode="reduce-overhead")


def test_compile_mode_options_are_one_line_errors(tmp_path: Path) -> None:
    src, out = tmp_path / "v.mp4", tmp_path / "o.vtok"
    make_video(src, n=3, w=32, h=32)
    err = assert_one_line_error(cli("encode", str(src), "-o", str(out), "--compile-mode", "default"), 2)
    assert "needs --compile" in err
    err = assert_one_line_error(
        cli("encode", str(src), "-o", str(out), "--model", "trivial", "--device", "cpu", "--compile",
            "--compile-mode", "reduce-overhead"), 2,
    )  # fmt: skip
    assert "CUDA graphs need a CUDA device" in err
    assert not out.exists()
