"""--max-memory: sizes parsed, the peak estimate against a measured peak, plans that shrink with the budget,
and the options on `vidtok encode` / `vidtok decode` (a tiny FSQ model, so the probes take a second)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from vidtok_cli import memory_plan, video
from vidtok_cli.errors import UsageError
from vidtok_cli.loading import load_model
from vidtok_cli.memory_plan import (
    PeakMeter,
    measure_model,
    measure_peak,
    parse_memory,
    plan_memory,
    runtime_bytes,
)
from vidtok_cli.stream import decode_chunks, encode_frames, split_chunks

from .helpers import assert_one_line_error, cli, make_video

GiB, MiB = 2**30, 2**20


@pytest.fixture(scope="module", autouse=True)
def no_runtime():
    """The process's own memory (`runtime_bytes`) left out of the plans here: it grows as tests run, and
    the plans compared must not depend on what ran before."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(memory_plan, "runtime_bytes", lambda model: 0)
        yield


@pytest.fixture(scope="module")
def model(tiny_weights):
    return load_model(tiny_weights)


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    return list(np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "text, expected",
    [("4GiB", 4 * GiB), ("4G", 4 * GiB), ("4g", 4 * GiB), ("512MiB", 512 * MiB), ("512 MB", 512 * 10**6),
     ("1.5GB", 1_500_000_000), ("1.5GiB", 3 * GiB // 2), ("1000000", 1_000_000), ("64k", 65536), (2048, 2048)],
)  # fmt: skip
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "4XB", "four GiB", "0", "0GiB", "-1G", "1e-9"])
def test_parse_memory_refuses_bad_sizes(text):
    with pytest.raises(UsageError) as e:
        parse_memory(text)
    assert "--max-memory" in str(e.value) and "\n" not in str(e.value)


def test_peak_meter_counts_new_storages_once_and_their_release():
    base = torch.ones(1000)  # allocated before: views and in-place updates of it are not new memory
    with PeakMeter(torch.device("cpu")) as meter:
        a = torch.empty(250_000)  # 1 MB
        b = a.view(500, 500) * 2  # 1 MB more; the view is not
        base.view(10, 100).add_(1)
        assert meter.live == 2_000_000
        del a
        meter.reset()
        c = b + 1
        del b, c
        assert meter.live == 0 and meter.peak == 2_000_000
    assert measure_peak(lambda: torch.empty(1000, dtype=torch.float64), "cpu") == 8000


@pytest.mark.parametrize("h, w, tile", [(40, 56, None), (40, 72, 40)])
def test_estimate_is_close_to_the_measured_peak(model, h, w, tile):
    """Sizes the fit never saw (chunks of 8 frames; whole frames or 40-pixel tiles): the estimate of the
    tensors' peak (without the weights, host frames and allocator overhead) within 0.8-1.25x of the
    measured one."""
    mm = dataclasses.replace(measure_model(model), host_frames=False, overhead=1.0, runtime=0)
    frames = _frames(17, h, w)
    chunks = []
    with torch.no_grad():
        enc = measure_peak(lambda: chunks.extend(encode_frames(model, iter(frames), 8, tile=tile)), "cpu")
        dec = measure_peak(lambda: list(decode_chunks(model, iter(chunks), tile=tile)), "cpu")
    for direction, measured in (("encode", enc), ("decode", dec)):
        estimate = mm.estimate(8, h, w, tile, None, (direction,)) - mm.weights
        assert 0.8 < estimate / measured < 1.25, (direction, estimate, measured)


def test_smaller_budgets_give_smaller_chunks_then_tiles(model):
    """Budgets from twice the default plan's estimate down, 10% at a time, until nothing fits (720p)."""
    mm = measure_model(model)
    budget, last, plans = 2 * mm.estimate(16, 720, 1280), (16, 10**9), []
    while True:
        try:
            p = plan_memory(model, (720, 1280), budget)
        except UsageError:
            break
        size = (p.chunk_frames, p.tile or 10**9)
        assert p.estimated_peak_bytes <= budget and p.warning is None
        assert size[0] <= last[0] and size[1] <= last[1], (budget, size, last)
        assert p.chunk_frames % 4 == 0 and (p.tile is None or p.tile % 8 == 0)
        plans.append(p)
        budget, last = int(budget * 0.9), size
    assert plans[0].chunk_frames == 16 and plans[0].tile is None  # never above the default chunk
    assert {p.chunk_frames for p in plans} == {4, 8, 12, 16}
    assert any(p.tile for p in plans)  # then tiles


def test_nothing_fits_is_a_one_line_usage_error(model):
    weights = measure_model(model).weights
    for budget, what in (
        (weights // 2, "weights and the rest of the process take"),
        (weights + MiB, "the smallest plan"),
    ):
        with pytest.raises(UsageError) as e:
            plan_memory(model, (720, 1280), budget)
        assert "too little" in str(e.value) and what in str(e.value) and "\n" not in str(e.value)


def test_the_rest_of_the_process_counts_on_the_cpu(model):
    rest = runtime_bytes(model)  # the function itself (patched on the module only)
    assert 50 * MiB < rest < 64 * GiB  # at least the interpreter and torch
    mm = measure_model(model)
    more = dataclasses.replace(mm, runtime=rest)
    assert more.estimate(8, 64, 96) - mm.estimate(8, 64, 96) == rest


def test_explicit_chunk_over_the_budget_warns(model):
    fits = plan_memory(model, (64, 96), 64 * MiB)
    assert fits.warning is None and fits.estimated_peak_bytes <= 64 * MiB
    p = plan_memory(model, (64, 96), 64 * MiB, chunk_frames=256)
    assert p.chunk_frames == 256 and p.estimated_peak_bytes > 64 * MiB
    assert "--chunk-frames 256" in p.warning and "exceeds --max-memory 64.0 MiB" in p.warning


def test_split_chunks_decode_the_same_frames(model):
    chunks = list(encode_frames(model, iter(_frames(21, 32, 32)), 16))
    pieces = list(split_chunks(model, chunks, 1))
    assert len(pieces) == 6 and [c.segment_start for c in pieces] == [True] + [False] * 5
    assert [c.first_frame for c in pieces] == [0, 1, 5, 9, 13, 17] and pieces[-1].end_frame == 21
    whole = np.concatenate([f for _, f in decode_chunks(model, iter(chunks))])
    split = np.concatenate([f for _, f in decode_chunks(model, iter(pieces))])
    assert whole.shape == split.shape == (21, 32, 32, 3)
    assert np.abs(whole.astype(int) - split.astype(int)).max() <= 1


def test_cli_encode_and_decode_within_a_budget(tiny_weights, model, tmp_path):
    src, vt, mp4 = tmp_path / "v.mp4", tmp_path / "v.vtok", tmp_path / "v.mp4.out.mp4"
    make_video(src, n=20, w=96, h=64)
    budget = measure_model(model).estimate(8, 64, 96) + 1  # chunk 8 fits, chunk 12 does not
    proc = cli("encode", str(src), "-o", str(vt), "--model", str(tiny_weights), "--max-memory", str(budget),
               "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "chunk 8 frames, whole frames (estimated peak" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["frames"] == 20 and "chunk 8 frames" in summary["memory_plan"]
    info = json.loads(cli("info", str(vt), "--json").stdout)
    assert info["header"]["chunking"]["frames_per_record"] == 8
    proc = cli("decode", str(vt), "-o", str(mp4), "--max-memory", "1GiB")
    assert proc.returncode == 0, proc.stderr
    assert "max-memory 1.0 GiB: chunk 8 frames" in proc.stderr  # at most the file's records
    assert len(list(video.iter_frames(mp4))) == 20


def test_cli_impossible_budget_writes_nothing(tiny_weights, tmp_path):
    src, vt, mp4 = tmp_path / "v.mp4", tmp_path / "v.vtok", tmp_path / "out.mp4"
    make_video(src, n=5, w=32, h=32)
    err = assert_one_line_error(
        cli("encode", str(src), "-o", str(vt), "--model", str(tiny_weights), "--max-memory", "1KiB"), 2
    )
    assert "--max-memory 1.0 KiB is too little" in err and not vt.exists()
    assert cli("encode", str(src), "-o", str(vt), "--model", str(tiny_weights), "-q").returncode == 0
    err = assert_one_line_error(cli("decode", str(vt), "-o", str(mp4), "--max-memory", "1KiB"), 2)
    assert "too little" in err and not mp4.exists()
    err = assert_one_line_error(cli("decode", str(vt), "-o", str(mp4), "--max-memory", "lots"), 2)
    assert "--max-memory 'lots'" in err and not mp4.exists()


def test_a_compiled_model_is_probed_eagerly(tiny_weights):
    """Planning a compiled model (`--compile --max-memory`) compiles no graph for the probe sizes."""
    from torch._dynamo.utils import counters

    from vidtok_cli.runtime import compile_model

    tok = compile_model(load_model(tiny_weights), backend="aot_eager")
    counters.clear()
    mm = memory_plan.measure_model(tok)
    assert mm.weights > 0
    assert not counters["stats"].get("unique_graphs")
