"""Tests of vidtok_cli.frames: uint8 frames <-> model tensors, resize, crop, pad, the bench's [0, 1] frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidtok_cli import frames as FR
from vidtok_cli.tokenizer import FrameLayout

F = torch.nn.functional


def test_frames_to_tensor_round_trip():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    x = FR.frames_to_tensor(frames)
    assert x.shape == (1, 3, 3, 5, 7) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[0, :, 1, 2, 3], (torch.from_numpy(frames[1, 2, 3]).float() / 255 - 0.5) / 0.5)
    np.testing.assert_array_equal(FR.tensor_to_frames(x), frames)
    np.testing.assert_array_equal(FR.tensor_to_frames(x[0]), frames)


def test_tensor_to_frames_clamps_and_rounds_half_even():
    x = torch.tensor([-3.0, 3.0, 1.0 / 255.0, 3.0 / 255.0]).view(1, 1, 1, 4).expand(3, 1, 1, 4)
    # (x+1)*127.5: 1/255 -> 128.0, 3/255 -> 129.0; -3 -> 0; 3 -> 255
    out = FR.tensor_to_frames(x)
    assert out.shape == (1, 1, 4, 3)
    assert out[0, 0, :, 0].tolist() == [0, 255, 128, 129]
    # 0.0 -> 127.5 exactly (the only exact half in float32 on this grid) -> 128; twice the same
    zero = torch.zeros(1, 3, 2, 2, 2)
    assert FR.tensor_to_frames(zero).tolist() == FR.tensor_to_frames(zero.clone()).tolist()
    assert (FR.tensor_to_frames(zero) == 128).all()
    with pytest.raises(ValueError):
        FR.tensor_to_frames(torch.zeros(2, 3, 1, 4, 4))


def test_resize_matches_interpolate_and_sizes():
    assert FR.resized_size(1080, 1920, 256) == (256, 455)
    assert FR.resized_size(1920, 1080, 256) == (455, 256)
    assert FR.resized_size(272, 640, 256) == (256, 602)
    x = torch.rand(1, 3, 2, 54, 96)
    y = FR.resize_short_side(x, 16)
    assert y.shape == (1, 3, 2, 16, FR.resized_size(54, 96, 16)[1])
    ref = F.interpolate(
        x[0].transpose(0, 1), size=y.shape[-2:], mode="bilinear", align_corners=False, antialias=True
    )
    torch.testing.assert_close(y[0].transpose(0, 1), ref, rtol=0, atol=0)
    # 4D and 3D inputs, uint8
    assert FR.resize_short_side(torch.rand(5, 3, 54, 96), 16).shape == (5, 3, 16, 28)
    assert FR.resize_short_side(torch.rand(3, 96, 54), 16).shape == (3, 28, 16)
    u = FR.resize_short_side(torch.randint(0, 256, (2, 3, 54, 96), dtype=torch.uint8), 16)
    assert u.dtype == torch.uint8 and u.shape == (2, 3, 16, 28)
    assert FR.resize_short_side(x, 54) is x  # already the requested size


def test_resize_1080p_official_shape():
    x = torch.rand(1, 3, 1080, 1920)
    y = FR.resize_short_side(x, 256)
    assert y.shape == (1, 3, 256, 455)
    c = FR.center_crop(y, 256, 256)
    assert c.shape == (1, 3, 256, 256)
    torch.testing.assert_close(c, y[..., :, 100:356], rtol=0, atol=0)  # left = round(99.5) = 100


def test_center_crop_offsets():
    x = torch.arange(9 * 10).view(1, 9, 10)
    torch.testing.assert_close(FR.center_crop(x, 4, 4), x[..., 2:6, 3:7])  # round(2.5)=2, round(3.0)=3
    torch.testing.assert_close(FR.center_crop(x, 6, 5), x[..., 2:8, 2:7])  # round(1.5)=2, round(2.5)=2
    with pytest.raises(ValueError):
        FR.center_crop(x, 10, 4)


@pytest.mark.parametrize("shape", [(1, 3, 4, 27, 35), (3, 27, 35), (27, 35)])
@pytest.mark.parametrize("mode", ["replicate", "reflect", "constant"])
def test_pad_unpad_round_trip(shape, mode):
    x = torch.rand(*shape)
    y, pad = FR.pad_to_multiple(x, 8, mode=mode)
    assert y.shape[-2:] == (32, 40) and pad == (0, 5, 0, 5)
    assert y.shape[:-2] == x.shape[:-2]
    torch.testing.assert_close(FR.unpad(y, pad), x, rtol=0, atol=0)
    if mode == "replicate":
        torch.testing.assert_close(y[..., :27, 35:], x[..., :, -1:].expand(*x.shape[:-1], 5))
    if mode == "constant":
        assert float(y[..., 27:, :].abs().sum()) == 0.0


def test_pad_noop_and_uint8():
    x = torch.rand(1, 3, 2, 16, 32)
    y, pad = FR.pad_to_multiple(x, 16)
    assert y is x and pad == (0, 0, 0, 0) and FR.unpad(y, pad).shape == x.shape
    u = torch.randint(0, 256, (3, 27, 35), dtype=torch.uint8)
    v, pad = FR.pad_to_multiple(u, 4)
    assert v.dtype == torch.uint8 and v.shape == (3, 28, 36)
    assert torch.equal(FR.unpad(v, pad), u)


def test_frames_to_tensor_accepts_lists_tensors_and_dtypes():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    x = FR.frames_to_tensor(frames)
    assert torch.equal(FR.frames_to_tensor(list(frames)), x)
    assert torch.equal(FR.frames_to_tensor(torch.from_numpy(frames)), x)
    assert FR.frames_to_tensor(frames[0]).shape == (1, 3, 1, 4, 6)
    # every uint8 value: x / 127.5 - 1 is the official (x / 255 - 0.5) / 0.5, bit for bit
    all_u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    official = (torch.arange(256, dtype=torch.float32) / 255.0 - 0.5) / 0.5
    assert torch.equal(FR.frames_to_tensor(all_u8)[0, 0].flatten(), official)
    assert FR.frames_to_tensor(frames, dtype=torch.float16).dtype == torch.float16
    # float frames in [0, 255] (resized, not rounded) map the same way
    assert torch.equal(FR.frames_to_tensor(frames.astype(np.float32)), x)
    with pytest.raises(ValueError, match="uint8 or float"):
        FR.frames_to_tensor(frames.astype(np.int32))
    with pytest.raises(ValueError, match="shape"):
        FR.frames_to_tensor(frames[..., :2])
    # a list of (pinned, on CUDA) frame tensors, as `pinned_frames` hands them out
    assert torch.equal(FR.frames_to_tensor([torch.from_numpy(f) for f in frames]), x)


def test_pinned_frames_leaves_cpu_runs_alone_and_pins_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [np.full((4, 6, 3), i, dtype=np.uint8) for i in range(3)]
    assert FR.pinned_frames(frames, "cpu") is frames  # untouched: same arrays, nothing pinned
    pinned: list[torch.Tensor] = []

    def fake_pin(t: torch.Tensor) -> torch.Tensor:  # CUDA is not needed to check what gets pinned
        pinned.append(t)
        return t.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    lazy = FR.pinned_frames(iter(frames), torch.device("cuda"))
    assert pinned == []  # pinned where it is consumed (the reader thread), not here
    out = list(lazy)
    assert len(pinned) == 3 and all(isinstance(t, torch.Tensor) for t in out)
    assert [int(t[0, 0, 0]) for t in out] == [0, 1, 2] and out[0].shape == (4, 6, 3)


def test_resize_frame_is_resize_then_crop_in_uint8():
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (54, 96, 3), dtype=np.uint8)
    assert FR.resize_frame(frame, None) is frame
    out = FR.resize_frame(frame, 16)
    assert out.dtype == np.uint8 and out.shape == (16, 28, 3)
    ref = FR.resize_short_side(torch.from_numpy(frame).permute(2, 0, 1), 16).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(FR.resize_frame(frame, 16, crop=True), ref[:, 6:22])


def test_unit_frames_round_trip_through_the_model_layout():
    rng = np.random.default_rng(3)
    frames = list(rng.integers(0, 256, (3, 20, 30, 3), dtype=np.uint8))
    gt = FR.frames_to_unit(frames)
    assert gt.shape == (3, 3, 20, 30) and gt.dtype == torch.float32
    assert torch.equal(gt[1, :, 2, 3], torch.from_numpy(frames[1][2, 3]).float() / 255.0)
    x, (h, w) = FR.unit_to_model(gt, 8)
    assert x.shape == (1, 3, 3, 24, 32) and (h, w) == (20, 30) and x.is_contiguous()
    assert torch.equal(x[..., :20, :30], FR.frames_to_tensor(np.stack(frames)))
    torch.testing.assert_close(x[..., 20:, :30], x[..., 19:20, :30].expand(1, 3, 3, 4, 30), rtol=0, atol=0)
    back = FR.model_to_unit(x)[..., :h, :w]
    torch.testing.assert_close(back, gt, rtol=0, atol=1e-6)
    assert torch.equal(FR.quantize_unit(back) * 255.0, (gt * 255.0).round())
    small = FR.frames_to_unit(frames, size=10, crop=True)
    assert small.shape == (3, 3, 10, 10)


def test_native_frame_counts():
    """The padded frame counts (formerly video.pad_frame_count) come from the family's FrameLayout."""

    def count(n, tdf, causal, clip=16):
        return FrameLayout(
            temporal_factor=tdf, spatial_factor=8, causal=causal, clip_frames=clip
        ).native_frames(n)

    assert [count(n, 4, causal=True) for n in (1, 2, 5, 6, 17, 18)] == [1, 5, 5, 9, 17, 21]
    assert [count(n, 2, causal=True) for n in (1, 2, 3, 4)] == [1, 3, 3, 5]
    assert [count(n, 4, causal=False) for n in (1, 16, 17, 33)] == [16, 16, 32, 48]
    assert count(9, 4, causal=False, clip=8) == 16
