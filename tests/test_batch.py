"""`--batch N`: independent clips of non-causal models run through the model N at a time, with the same
chunks (latents, frame ranges, latent counts, segment marks) as one at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidtok_cli import load_model, vtok
from vidtok_cli.stream import EncodedChunk, encode_frames

from .helpers import VIDTOK_REF, assert_one_line_error, cli, fixture_config, make_video, tiny_vidtwin

NONCAUSAL = "vidtok_kl_noncausal_488_4chn"


def _frames(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def _same(a: list[EncodedChunk], b: list[EncodedChunk]) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        assert (p.first_latent, p.first_frame, p.end_frame, p.segment_start) == (
            q.first_latent,
            q.first_frame,
            q.end_frame,
            q.segment_start,
        )
        assert p.latents.keys() == q.latents.keys()
        for k in p.latents:
            assert p.latents[k].shape == q.latents[k].shape
            # the same clip in a batch of N: equal to float rounding of the batched kernels
            torch.testing.assert_close(p.latents[k], q.latents[k], rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def noncausal():
    return load_model(VIDTOK_REF / NONCAUSAL / "model.ckpt", config=fixture_config(NONCAUSAL))


@pytest.mark.usefixtures("reference")
@pytest.mark.parametrize(
    "kw",
    [{}, {"segment_frames": 32}, {"clip_overlap": 4}],
    ids=["clips", "segments", "overlap"],
)
def test_noncausal_vidtok_batches_equal_one_at_a_time(noncausal, kw: dict) -> None:
    frames = _frames(41, 32)  # 3 clips of 16, the last one padded
    one = list(encode_frames(noncausal, frames, **kw))
    assert len(one) >= 3
    for batch in (2, 4):
        _same(one, list(encode_frames(noncausal, frames, batch=batch, **kw)))


def test_vidtwin_batches_equal_one_at_a_time(tmp_path: Path) -> None:
    model = load_model(tiny_vidtwin(tmp_path / "twin.safetensors"))
    frames = _frames(11, 32)  # 3 clips of 4 frames, the last one padded
    one = list(encode_frames(model, frames))
    assert [c.first_frame for c in one] == [0, 4, 8] and all(c.segment_start for c in one)
    _same(one, list(encode_frames(model, frames, batch=2)))
    _same(one, list(encode_frames(model, frames, batch=8)))


def test_batch_is_refused_for_causal_models_and_below_one() -> None:
    from vidtok_cli.errors import UsageError

    model = load_model()
    with pytest.raises(UsageError, match="--batch: this model is causal"):
        list(encode_frames(model, _frames(5, 32), batch=2))
    with pytest.raises(UsageError, match="--batch must be >= 1"):
        list(encode_frames(model, _frames(5, 32), batch=0))


def test_cli_batch_writes_the_same_latents(tmp_path: Path) -> None:
    weights = tiny_vidtwin(tmp_path / "twin.safetensors")
    src = tmp_path / "v.mp4"
    make_video(src, n=14, w=40, h=32, fps=30)
    outs = []
    for batch in ("1", "3"):
        dst = tmp_path / f"b{batch}.vtok"
        args = ("encode", str(src), "-o", str(dst), "--model", str(weights), "--device", "cpu", "-q")
        proc = cli(*args, "--latent-bits", "0", "--latent-dtype", "float32", "--batch", batch)
        assert proc.returncode == 0, proc.stderr
        outs.append([c.latents for c in vtok.VtokReader(dst).iter_chunks()])
    assert len(outs[0]) == len(outs[1]) == 4
    for a, b in zip(*outs, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=0, atol=1e-5)


def test_cli_batch_with_a_causal_model_is_a_one_line_error(tmp_path: Path) -> None:
    src = tmp_path / "v.mp4"
    make_video(src, n=5, w=32, h=32)
    dst = tmp_path / "out.vtok"
    err = assert_one_line_error(cli("encode", str(src), "-o", str(dst), "--device", "cpu", "--batch", "2"), 2)
    assert "--batch" in err and "causal" in err
    assert not dst.exists()


def test_bench_batch_scores_like_one_clip_at_a_time(tmp_path: Path) -> None:
    from vidtok_cli.bench import BenchConfig, run_bench

    src = tmp_path / "v.mp4"
    make_video(src, n=40, w=32, h=24, fps=30)
    model = load_model()
    results = []
    for batch in (1, 2):
        cfg = BenchConfig(
            protocol="custom", size=16, frames=9, metrics=("psnr", "ssim"), batch=batch, max_clips=3
        )
        results.append(run_bench([src], model, cfg))
    one, two = results
    assert [c["first_frame"] for c in one.clips] == [c["first_frame"] for c in two.clips] and len(
        one.clips
    ) == 3
    assert [c.get("batch") for c in two.clips] == [2, 2, None]
    for a, b in zip(one.clips, two.clips, strict=True):
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-3) and a["ssim"] == pytest.approx(
            b["ssim"], abs=1e-5
        )
    assert one.overall["bpp"] == pytest.approx(two.overall["bpp"], rel=0.02)  # 6-bit latents: a rare bin flip
    assert one.overall["clips"] == two.overall["clips"]


def test_bench_batch_is_refused_with_long_video() -> None:
    from vidtok_cli.bench import BenchConfig
    from vidtok_cli.errors import UsageError

    with pytest.raises(UsageError, match="--batch runs independent clips together"):
        BenchConfig(protocol="custom", long_video=True, batch=2).validate()
    with pytest.raises(UsageError, match="--batch must be at least 1"):
        BenchConfig(batch=0).validate()
