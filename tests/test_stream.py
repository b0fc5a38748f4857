"""vidtok_cli.stream: chunked encoding/decoding of frame iterators, segments, non-causal clips, tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidtok_cli.arch import VidTokConfig, build_model
from vidtok_cli.errors import UsageError
from vidtok_cli.families.vidtok import VidTokTokenizer
from vidtok_cli.frames import frames_to_tensor
from vidtok_cli.stream import Tiling, decode_chunks, encode_frames, tile_spans


def _model(**kw):
    torch.manual_seed(0)
    return VidTokTokenizer(build_model(VidTokConfig(ch=8, **kw)).eval())


@pytest.fixture(scope="module")
def kl():
    return _model(z_channels=4)


@pytest.fixture(scope="module")
def fsq():
    return _model(regularizer="fsq", z_channels=6, fsq_levels=(8,) * 6)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (32, 40, 3))
    return [np.roll(base, 2 * i, axis=1).astype(np.uint8) for i in range(13)]


def _cat(chunks, m=None):
    """The decoder input of the chunks, in order (FSQ: the codes of the stored tokens)."""
    if chunks[0].indices is not None:
        return torch.cat([m.indices_to_latent(c.indices[None])[0] for c in chunks], dim=1)
    return torch.cat([c.latent for c in chunks], dim=1)


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_chunked_encode_equals_whole_clip(kl, fsq, frames, chunk):
    x = frames_to_tensor(frames, torch.device("cpu"), torch.float32)
    for m in (kl, fsq):
        with torch.no_grad():
            whole = m.encode(x)
        chunks = list(encode_frames(m, iter(frames), chunk_frames=chunk))
        assert (_cat(chunks, m) - whole.latent[0]).abs().max().item() <= 1e-5
        if whole.indices is not None:
            assert torch.equal(torch.cat([c.indices for c in chunks], dim=0), whole.indices[0])
        # frame ranges tile the padded sequence: latent 0 covers frame 0, then 4 frames per latent
        assert chunks[0].first_frame == 0 and chunks[-1].end_frame == 13
        assert all(a.end_frame == b.first_frame for a, b in zip(chunks, chunks[1:], strict=False))


def test_chunked_decode_equals_whole_clip(kl, frames):
    x = frames_to_tensor(frames, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        z = kl.encode(x).latent
        ref = kl.decode(z)
    ref_u8 = ((ref[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    chunks = list(encode_frames(kl, iter(frames), chunk_frames=3))
    pieces = list(decode_chunks(kl, iter(chunks)))
    out = np.concatenate([p for _, p in pieces])
    assert [f for f, _ in pieces] == sorted(f for f, _ in pieces) and pieces[0][0] == 0
    assert out.shape == ref_u8.shape
    # float rounding may move a value across a .5 boundary: at most one level, very rarely
    diff = np.abs(out.astype(int) - ref_u8.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_end_padding_to_a_native_length(kl, frames):
    assert [kl.frame_layout.native_frames(n) for n in (0, 1, 2, 5, 6, 17)] == [0, 1, 5, 5, 9, 17]
    chunks = list(encode_frames(kl, iter(frames[:10]), chunk_frames=4))
    assert chunks[-1].end_frame == 13 and _cat(chunks).shape[1] == 4


def test_segments_are_independent_streams(fsq, frames):
    chunks = list(encode_frames(fsq, iter(frames[:13]), chunk_frames=4, segment_frames=9))
    starts = [c.first_frame for c in chunks if c.segment_start]
    assert starts == [0, 9]
    second = [c for c in chunks if c.first_frame >= 9]
    alone = list(encode_frames(fsq, iter(frames[9:13]), chunk_frames=4))
    assert torch.equal(torch.cat([c.indices for c in second]), torch.cat([c.indices for c in alone]))
    with pytest.raises(UsageError, match="segment-frames"):
        list(encode_frames(fsq, iter(frames), segment_frames=6))


def test_noncausal_clips():
    m = _model(causal=False, z_channels=4)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(20)]
    chunks = list(encode_frames(m, iter(frames)))
    assert [(c.first_frame, c.end_frame) for c in chunks] == [(0, 16), (16, 32)]
    with torch.no_grad():
        ref = m.encode(frames_to_tensor(frames[:16], torch.device("cpu"), torch.float32)).latent[0]
    assert (chunks[0].latent - ref).abs().max().item() <= 1e-5
    out = list(decode_chunks(m, iter(chunks)))
    assert [f for f, _ in out] == [0, 16] and sum(len(p) for _, p in out) == 32


# --- tiling ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size,tile,overlap", [(100, 40, 8), (64, 64, 16), (72, 32, 16), (96, 40, 0)])
def test_tile_spans_cover_and_overlap(size, tile, overlap):
    spans = tile_spans(size, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == size
    assert all(b - a == min(tile, size) for a, b in spans)
    assert all(b0 - a1 >= overlap for (_, b0), (a1, _) in zip(spans, spans[1:], strict=False))


def test_tile_weights_form_a_partition_of_unity():
    t = Tiling(72, 104, 32, 8, 8)
    assert t.active and len(t) == len(t.ys) * len(t.xs)
    acc = torch.zeros(72, 104, dtype=torch.float64)
    for _, ys, xs, w in t.regions(1):
        assert (w > 0).all()
        acc[ys, xs] += w
    # the blend divides by the weight sum; every pixel is covered, ramps stay in (0, 1]
    assert (acc > 0).all() and acc.max() <= 2.0
    assert not Tiling(64, 64, 64, None, 8).active
    with pytest.raises(UsageError):
        Tiling(64, 64, 16, None, 8)  # smaller than 4 latent cells
    with pytest.raises(UsageError):
        Tiling(64, 64, 64, 40, 8)  # overlap above half a tile


def test_tiled_equals_untiled_when_one_tile_covers_the_frame(fsq, frames):
    a = list(encode_frames(fsq, iter(frames[:9]), chunk_frames=4))
    b = list(encode_frames(fsq, iter(frames[:9]), chunk_frames=4, tile=64))
    assert torch.equal(torch.cat([c.indices for c in a]), torch.cat([c.indices for c in b]))


def test_tiled_streaming_is_exact_and_tokens_are_valid(fsq, kl, frames):
    """Each tile is a causal stream of its own: chunked tiled encoding equals whole-clip tiled encoding."""
    for m in (kl, fsq):
        whole = list(encode_frames(m, iter(frames), chunk_frames=13, tile=32, tile_overlap=8))
        chunked = list(encode_frames(m, iter(frames), chunk_frames=3, tile=32, tile_overlap=8))
        assert (_cat(whole, m) - _cat(chunked, m)).abs().max().item() <= 1e-5
        out_w = np.concatenate([p for _, p in decode_chunks(m, iter(whole), tile=32, tile_overlap=8)])
        out_c = np.concatenate([p for _, p in decode_chunks(m, iter(chunked), tile=32, tile_overlap=8)])
        assert out_w.shape == (13, 32, 40, 3) and np.abs(out_w.astype(int) - out_c).max() <= 1
    idx = torch.cat([c.indices for c in chunked])
    assert idx.min() >= 0 and idx.max() < 8**6
    # blended FSQ latents are re-quantized: they are exactly the codes of their indices
    lat = _cat(chunked, fsq)
    assert torch.equal(fsq.indices_to_latent(idx.unsqueeze(0))[0], lat)


def test_noncausal_overlapping_clips_cross_fade():
    m = _model(causal=False, z_channels=4)
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(28)]
    chunks = list(encode_frames(m, iter(frames), clip_overlap=4))
    assert [(c.first_frame, c.end_frame) for c in chunks] == [(0, 16), (12, 28)]
    out = list(decode_chunks(m, iter(chunks)))
    starts = [f for f, _ in out]
    assert starts == sorted(starts) and sum(len(p) for _, p in out) == 28
    video = np.concatenate([p for _, p in out])
    # outside the shared frames each clip's own decode is kept; inside, a blend of both
    solo = [np.concatenate([p for _, p in decode_chunks(m, iter([c]))]) for c in chunks]
    assert np.array_equal(video[:12], solo[0][:12]) and np.array_equal(video[16:], solo[1][4:])
    lo = np.minimum(solo[0][12:16], solo[1][:4]).astype(int) - 1
    hi = np.maximum(solo[0][12:16], solo[1][:4]).astype(int) + 1
    assert ((video[12:16] >= lo) & (video[12:16] <= hi)).all()
    # a multiple of 16 frames exactly: no extra padded clip
    assert len(list(encode_frames(m, iter(frames[:16]), clip_overlap=4))) == 1
    with pytest.raises(UsageError, match="clip-overlap"):
        list(encode_frames(m, iter(frames), clip_overlap=3))
    with pytest.raises(UsageError, match="non-causal"):
        list(encode_frames(_model(z_channels=4), iter(frames), clip_overlap=4))


def test_clip_fader_makes_its_weights_on_the_clips_device() -> None:
    """The cross-fade of overlapping clips stays on their device (CUDA decoding; the meta device here,
    which refuses CPU operands the same way)."""
    from vidtok_cli.stream import _ClipFader

    fader = _ClipFader()
    assert list(fader.push(torch.zeros(1, 3, 4, 2, 2, device="meta"), 0)) == []
    ((first, head),) = fader.push(torch.zeros(1, 3, 4, 2, 2, device="meta"), 2)
    assert first == 0 and head.shape[2] == 2
    ((first, faded),) = fader.flush()
    assert first == 2 and faded.device.type == "meta" and faded.shape[2] == 4
