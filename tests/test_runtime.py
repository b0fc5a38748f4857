"""runtime: device, precision and TF32 policy; --precision on encode and decode; the trivial family end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidtok_cli import runtime
from vidtok_cli.errors import UsageError
from vidtok_cli.vtok import VtokReader

from .helpers import assert_one_line_error, cli, make_video


def test_compute_dtype_policy() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert runtime.compute_dtype("auto", cpu) is None
    assert runtime.compute_dtype("auto", cuda) == torch.bfloat16
    assert runtime.compute_dtype("fp32", cuda) is None
    assert runtime.compute_dtype("bf16", cpu) == torch.bfloat16
    assert runtime.compute_dtype("float16", cpu) == torch.float16
    assert runtime.precision_name(None) == "fp32" and runtime.precision_name(torch.float16) == "fp16"
    with pytest.raises(UsageError, match="precision"):
        runtime.compute_dtype("fp8", cpu)


def test_autocast_runs_matmuls_in_the_compute_dtype_on_cpu() -> None:
    a = torch.ones(4, 4)
    with runtime.autocast(torch.device("cpu"), torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    with runtime.autocast(torch.device("cpu"), None):
        assert (a @ a).dtype == torch.float32


def test_tf32_context_restores_the_global_flags() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with runtime.tf32(not before[0]):
        assert torch.backends.cuda.matmul.allow_tf32 is (not before[0])
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_encode_decode_precision_bf16_on_cpu(tmp_path: Path) -> None:
    src = tmp_path / "v.mp4"
    make_video(src, n=9, w=64, h=48)
    outs = {}
    for p in ("fp32", "bf16"):
        dst = tmp_path / f"{p}.vtok"
        proc = cli("encode", str(src), "-o", str(dst), "--precision", p, "--json", "--device", "cpu")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["precision"] == p
        outs[p] = np.concatenate([c.latents["latent"] for c in VtokReader(dst).iter_chunks()], axis=1)
    diff = np.abs(outs["fp32"].astype(np.float32) - outs["bf16"].astype(np.float32))
    assert 0 < diff.max() < 0.5  # bf16 autocast changes the numbers, a little
    proc = cli("decode", str(tmp_path / "fp32.vtok"), "-o", str(tmp_path / "d.mp4"), "--precision", "bf16",
               "--json", "--device", "cpu")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["precision"] == "bf16"


def test_impossible_precision_is_a_usage_error_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "v.mp4"
    make_video(src, n=5, w=32, h=32)
    err = assert_one_line_error(
        cli("encode", str(src), "-o", str(tmp_path / "o.vtok"), "--precision", "int4"), 2
    )
    assert "precision" in err
    assert not (tmp_path / "o.vtok").exists()


def test_trivial_family_round_trips_a_video_through_encode_and_decode(tmp_path: Path) -> None:
    src = tmp_path / "v.mp4"
    make_video(src, n=13, w=64, h=48)
    vt = tmp_path / "t.vtok"
    proc = cli("encode", str(src), "-o", str(vt), "--model", "trivial", "--json", "--psnr")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["model"] == "trivial" and summary["frames"] == 13 and summary["psnr"] > 15
    reader = VtokReader(vt)
    assert reader.header["model"]["family"] == "trivial"
    assert [s.name for s in reader.streams] == ["latent"]
    proc = cli("decode", str(vt), "-o", str(tmp_path / "t.mp4"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["frames"] == 13


def test_a_file_of_another_family_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "v.mp4"
    make_video(src, n=5, w=64, h=48)
    vt = tmp_path / "t.vtok"
    assert cli("encode", str(src), "-o", str(vt), "--model", "trivial", "-q").returncode == 0
    out = tmp_path / "o.mp4"
    err = assert_one_line_error(cli("decode", str(vt), "-o", str(out), "--weights", "vidtok-default-kl"))
    assert "trivial latents" in err and "vidtok model" in err
    assert not out.exists()


def test_device_copies_are_plain_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    t = torch.arange(6, dtype=torch.uint8)

    def no_pinning(_t: torch.Tensor) -> torch.Tensor:
        raise AssertionError("nothing is pinned on a CPU run")

    monkeypatch.setattr(torch.Tensor, "pin_memory", no_pinning)
    assert runtime.to_device(t, "cpu") is t
    assert runtime.pin_if_cuda(t, torch.device("cpu")) is t
    assert runtime.to_host_async(t) is t


def test_pin_if_cuda_pins_host_tensors_for_a_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    t = torch.arange(6, dtype=torch.uint8)
    pinned = torch.zeros(6, dtype=torch.uint8)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda _t: pinned)
    assert runtime.pin_if_cuda(t, torch.device("cuda")) is pinned
    assert runtime.pin_if_cuda(t, "cuda:1") is pinned


class _Marker:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def synchronize(self) -> None:
        self.log.append(f"wait {self.name}")


def test_ready_one_behind_hands_out_each_item_after_the_next_is_queued_on_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []

    def produce(n: int):
        for i in range(n):
            log.append(f"queue {i}")
            yield i

    count = iter(range(100))
    monkeypatch.setattr(runtime, "_copies_done_marker", lambda dev: _Marker(log, str(next(count))))
    for i in runtime.ready_one_behind(produce(3), torch.device("cuda")):
        log.append(f"use {i}")
    assert log == [
        "queue 0", "queue 1", "wait 0", "use 0", "queue 2", "wait 1", "use 1", "wait 2", "use 2"
    ]  # fmt: skip
    # on the CPU: each item at once, no lookahead, no marker
    log.clear()
    monkeypatch.setattr(runtime, "_copies_done_marker", None)
    for i in runtime.ready_one_behind(produce(2), "cpu"):
        log.append(f"use {i}")
    assert log == ["queue 0", "use 0", "queue 1", "use 1"]
