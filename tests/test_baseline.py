"""The trivial codec of `vidtok bench --baseline`: shapes, exactness on its own terms, streaming."""

from __future__ import annotations

import torch

from vidtok_cli.arch.trivial import TrivialCodec


def test_keeps_every_fourth_frame_at_one_eighth():
    m = TrivialCodec()
    x = torch.rand(1, 3, 17, 64, 48) * 2 - 1
    z = m.encode(x).latent
    assert z.shape == (1, 3, 5, 8, 6)
    y = m.decode(z)
    assert y.shape == x.shape
    # a video constant in space is kept exactly at the kept frames and linear in between
    c = torch.linspace(-1, 1, 17).view(1, 1, 17, 1, 1).expand(1, 3, 17, 16, 16)
    out = m.decode(m.encode(c).latent)
    assert torch.allclose(out, c, atol=1e-6)


def test_streaming_equals_whole():
    m = TrivialCodec()
    x = torch.rand(1, 3, 21, 32, 32) * 2 - 1
    whole = m.encode(x).latent
    st, parts = None, []
    for chunk in x.split(3, dim=2):
        out, st = m.encode_chunk(chunk, st)
        parts.append(out.latent)
    assert torch.equal(torch.cat(parts, dim=2), whole)
    ref = m.decode(whole)
    st, frames = None, []
    for k in range(whole.shape[2]):
        f, st = m.decode_chunk(whole[:, :, k : k + 1], st, final=k == whole.shape[2] - 1)
        frames.append(f)
    assert torch.allclose(torch.cat(frames, dim=2), ref, atol=1e-6)
