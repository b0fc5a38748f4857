"""The .vtok container (vidtok_cli.vtok): payload codings, atomic writing, and damaged files."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidtok_cli import vtok as vc
from vidtok_cli.errors import VidtokError
from vidtok_cli.vtok import (
    ContainerError,
    VtokReader,
    VtokWriter,
    bfloat16_bits_to_float32,
    float32_to_bfloat16_bits,
    make_header,
    pack_indices,
    stream_entry,
    token_coding_report,
    unpack_indices,
)
from vidtok_cli.vtok.rans import rans_decode, rans_encode

LEVELS6 = [8, 8, 8, 8, 8, 8]
SHA = "ab" * 32


def header(mode: str = "tokens", *, levels=LEVELS6, h: int = 4, w: int = 6, dtype: str = "float16", **kw):
    """A one-stream header: ``tokens`` (FSQ, (t, h, w)) or ``latent`` (continuous, (C, t, h, w))."""
    if mode == "tokens":
        stream = stream_entry("tokens", "fsq", (h, w), time_axis=0, levels=levels, channels=len(levels))
    else:
        c = kw.pop("channels", 4)
        stream = stream_entry("latent", "continuous", (c, h, w), time_axis=1, dtype=dtype, channels=c)
    return make_header(
        model_card="vidtok-test",
        weights_sha256=SHA,
        streams=kw.pop("streams", [stream]),
        temporal_factor=4,
        spatial_factor=8,
        width=w * 8,
        height=h * 8,
        fps=Fraction(30000, 1001),
        **kw,
    )


def gauss_tokens(rng, shape, levels, sigma: float = 1.3) -> np.ndarray:
    """FSQ indices whose digits follow a discretised Gaussian centred on the middle level."""
    idx = np.zeros(shape, dtype=np.int64)
    basis = 1
    for lv in levels:
        p = np.exp(-0.5 * ((np.arange(lv) - (lv - 1) / 2) / sigma) ** 2)
        idx += rng.choice(lv, size=shape, p=p / p.sum()) * basis
        basis *= lv
    return idx


def causal_ranges(n_chunks: int, frames_per_chunk: int = 8, t: int = 2):
    """(first_frame, end_frame, first_latent, t) of a causal stream: frame 0 alone, then chunks."""
    out = [(0, 1, 0, 1)]
    f, lat = 1, 1
    for _ in range(n_chunks):
        out.append((f, f + frames_per_chunk, lat, t))
        f += frames_per_chunk
        lat += t
    return out


def no_part_files(d: Path) -> bool:
    return not [p for p in d.iterdir() if ".partial" in p.name]


# ---------------------------------------------------------------------------------------------------------
# A small independent parser written from docs/FORMAT.md (checks the spec describes the bytes)


def parse_by_spec(data: bytes) -> dict:
    magic, major, minor, hlen = struct.unpack_from("<8sHHI", data, 0)
    assert magic == b"\x89VTK\r\n\x1a\n"
    hdr = data[16 : 16 + hlen]
    (crc,) = struct.unpack_from("<I", data, 16 + hlen)
    assert crc == zlib.crc32(data[: 16 + hlen])
    footer_offset, end = struct.unpack_from("<Q8s", data, len(data) - 16)
    assert end == b"VTOK_END"
    records = []
    off = 16 + hlen + 4
    while True:
        rtype, flags, reserved, plen, mlen = struct.unpack_from("<BBHQI", data, off)
        body_end = off + 16 + mlen + plen
        (crc,) = struct.unpack_from("<I", data, body_end)
        assert crc == zlib.crc32(data[off:body_end])
        meta = json.loads(data[off + 16 : off + 16 + mlen])
        payload = data[off + 16 + mlen : body_end]
        records.append((off, rtype, flags, meta, payload))
        if rtype == 255:
            assert off == footer_offset and body_end + 4 == len(data) - 16
            break
        off = body_end + 4
    return {"version": (major, minor), "header": json.loads(hdr), "records": records}


def rewrite_record(
    data: bytes, k: int, *, meta: bytes | None = None, payload: bytes | None = None, head=None
):
    """The file with record k's meta/payload/fixed fields replaced and its CRC recomputed (no index fix)."""
    spec = parse_by_spec(data)
    off, rtype, flags, m, p = spec["records"][k]
    _, _, _, plen, mlen = struct.unpack_from("<BBHQI", data, off)
    old_end = off + 16 + mlen + plen + 4
    meta_b = data[off + 16 : off + 16 + mlen] if meta is None else meta
    pay_b = p if payload is None else payload
    fixed = head if head is not None else (rtype, flags, 0, len(pay_b), len(meta_b))
    body = struct.pack("<BBHQI", *fixed) + meta_b + pay_b
    return data[:off] + body + struct.pack("<I", zlib.crc32(body)) + data[old_end:]


# ---------------------------------------------------------------------------------------------------------
# Sample files


def write_token_file(
    path: Path, *, seed: int = 0, n_chunks: int = 4, segment_every: int = 2, audio: bool = True
):
    """A tokens file: a causal stream with segment markers, audio packets, rANS and packed records."""
    rng = np.random.default_rng(seed)
    aud = {
        "codec": "aac",
        "sample_rate": 48000,
        "channels": 2,
        "time_base": (1, 48000),
        "extradata": b"\x12\x10",
    }
    hdr = header("tokens", levels=[8, 8, 8], h=8, w=8, audio=aud if audio else None, segment_frames=16)
    expected = []
    with VtokWriter(path, hdr) as w:
        for i, (f0, f1, l0, t) in enumerate(causal_ranges(n_chunks)):
            if i and segment_every and i % segment_every == 0:
                w.mark_segment(f0, l0)
            if i % 2:
                idx = rng.integers(0, 512, size=(t, 8, 8))
            else:
                idx = gauss_tokens(rng, (t, 8, 8), [8, 8, 8], sigma=0.6)
                if t > 1:  # a mostly static scene
                    idx[1] = np.where(rng.random((8, 8)) < 0.8, idx[0], idx[1])
            w.write_chunk({"tokens": idx}, f0, f1, l0)
            expected.append((f0, f1, l0, idx))
            if audio:
                w.write_audio(bytes([i]) * (5 + i), pts=1024 * i, dts=1024 * i, duration=1024)
        w.close(header_updates={"source": {"frame_count": expected[-1][1]}})
    return expected


def write_latent_file(path: Path, dtype: str = "float16", seed: int = 0, n_chunks: int = 3):
    rng = np.random.default_rng(seed)
    hdr = header("latent", dtype=dtype, channels=4, h=3, w=5)
    expected = []
    with VtokWriter(path, hdr) as w:
        for i, (f0, f1, l0, t) in enumerate(causal_ranges(n_chunks)):
            if i == 2:
                w.mark_segment(f0, l0)
            lat = rng.standard_normal((4, t, 3, 5)).astype(np.float32) * 3
            w.write_chunk({"latent": lat}, f0, f1, l0)
            expected.append((f0, f1, l0, lat))
    return expected


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> tuple[Path, list]:
    p = tmp_path_factory.mktemp("tok") / "clip.vtok"
    return p, write_token_file(p)


@pytest.fixture(scope="module")
def latent_file(tmp_path_factory) -> tuple[Path, list]:
    p = tmp_path_factory.mktemp("lat") / "clip.vtok"
    return p, write_latent_file(p, "bfloat16")


# ---------------------------------------------------------------------------------------------------------
# Import hygiene


def test_importing_container_does_not_import_torch():
    code = "import sys, vidtok_cli.vtok; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_container_error_is_a_vidtok_error():
    assert issubclass(ContainerError, VidtokError)


# ---------------------------------------------------------------------------------------------------------
# bfloat16 and latent payloads

BF16_CASES = [
    (0x3F800000, 0x3F80),  # 1.0
    (0x3F808000, 0x3F80),  # tie, rounds to even (down)
    (0x3F818000, 0x3F82),  # tie, rounds to even (up)
    (0x3F808001, 0x3F81),  # just above the tie
    (0x3F807FFF, 0x3F80),  # just below the tie
    (0xBF818000, 0xBF82),  # negative tie
    (0x00000000, 0x0000),
    (0x80000000, 0x8000),  # -0.0
    (0x00008000, 0x0000),  # subnormal tie to even
    (0x00018000, 0x0002),
    (0x7F800000, 0x7F80),  # inf
    (0xFF800000, 0xFF80),  # -inf
    (0x7F7FFFFF, 0x7F80),  # max float rounds to inf
    (0x7F7F0000, 0x7F7F),  # max bfloat16
    (0x40490FDB, 0x4049),  # pi
]


@pytest.mark.parametrize("f32,bf16", BF16_CASES)
def test_bfloat16_known_values(f32, bf16):
    a = np.array([f32], dtype=np.uint32).view(np.float32)
    assert int(float32_to_bfloat16_bits(a)[0]) == bf16
    back = bfloat16_bits_to_float32(np.array([bf16], dtype=np.uint16))
    assert int(back.view(np.uint32)[0]) == bf16 << 16


def test_bfloat16_nan_stays_nan():
    bits = np.array([0x7FC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF], dtype=np.uint32)
    out = float32_to_bfloat16_bits(bits.view(np.float32))
    assert np.isnan(bfloat16_bits_to_float32(out)).all()
    assert int(out[2]) & 0x8000  # sign kept


def test_bfloat16_every_pattern_round_trips():
    pats = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    f = bfloat16_bits_to_float32(pats)
    again = float32_to_bfloat16_bits(f)
    finite = ~np.isnan(f)
    assert np.array_equal(again[finite], pats[finite])
    assert np.isnan(bfloat16_bits_to_float32(again[~finite])).all()


def test_bfloat16_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(20000) * np.exp(rng.uniform(-30, 30, 20000))).astype(np.float32)
    a = np.concatenate([a, np.array([np.inf, -np.inf, 3.4e38, -0.0], dtype=np.float32)])
    ref = torch.from_numpy(a).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(float32_to_bfloat16_bits(a), ref)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_latent_round_trip_every_dtype(tmp_path, dtype):
    p = tmp_path / "lat.vtok"
    expected = write_latent_file(p, dtype)
    r = VtokReader(p)
    assert r.header["streams"][0]["dtype"] == dtype
    chunks = list(r.iter_latent_chunks())
    assert [c[0] for c in chunks] == [e[2] for e in expected]
    for c, (f0, f1, _, lat) in zip(chunks, expected, strict=True):
        assert c.latents.dtype == np.float32 and (c.first_frame, c.end_frame) == (f0, f1)
        if dtype == "float32":
            want = lat
        elif dtype == "float16":
            want = lat.astype(np.float16).astype(np.float32)
        else:
            want = bfloat16_bits_to_float32(float32_to_bfloat16_bits(lat))
        assert np.array_equal(c.latents, want)
    assert [c.segment_start for c in chunks] == [True, False, True, False]


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float16"])
def test_latent_inf_nan_survive(tmp_path, dtype):
    p = tmp_path / "x.vtok"
    lat = np.zeros((4, 1, 3, 5), dtype=np.float32)
    lat[0, 0, 0, :3] = [np.inf, -np.inf, np.nan]
    with VtokWriter(p, header("latent", dtype=dtype, channels=4, h=3, w=5)) as w:
        w.write_chunk({"latent": lat}, 0, 1, 0)
    ((_, back),) = VtokReader(p).iter_latent_chunks()
    assert back[0, 0, 0, 0] == np.inf and back[0, 0, 0, 1] == -np.inf and np.isnan(back[0, 0, 0, 2])


def test_float16_overflow_is_refused(tmp_path):
    p = tmp_path / "x.vtok"
    with pytest.raises(ContainerError, match="float16"):
        with VtokWriter(p, header("latent", channels=4, h=3, w=5)) as w:
            w.write_chunk({"latent": np.full((4, 1, 3, 5), 1e5, dtype=np.float32)}, 0, 1, 0)
    assert not p.exists() and no_part_files(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# Bit packing


def test_pack_bit_order_is_little_endian():
    assert pack_indices(np.array([1, 2, 3]), 2) == bytes([0b111001])
    data = pack_indices(np.array([0, (1 << 18) - 1, 5]), 18)
    assert len(data) == 7  # 54 bits
    as_int = int.from_bytes(data, "little")
    assert (as_int >> 18) & ((1 << 18) - 1) == (1 << 18) - 1 and as_int >> 36 == 5 and as_int & 0x3FFFF == 0


@pytest.mark.parametrize("bits", [*range(1, 25), 18, 32, 63])
def test_pack_unpack_bit_widths(bits):
    rng = np.random.default_rng(bits)
    hi = (1 << bits) - 1
    v = rng.integers(0, hi, size=1001, endpoint=True, dtype=np.int64)
    v[:2] = [0, hi]
    data = pack_indices(v, bits)
    assert len(data) == (v.size * bits + 7) // 8
    assert np.array_equal(unpack_indices(data, bits, v.size), v)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda b: st.tuples(st.just(b), st.lists(st.integers(0, (1 << b) - 1), max_size=80))
    )
)
def test_pack_unpack_hypothesis(case):
    bits, values = case
    v = np.array(values, dtype=np.int64)
    assert np.array_equal(unpack_indices(pack_indices(v, bits), bits, len(values)), v)


def test_pack_refuses_out_of_range():
    with pytest.raises(ValueError):
        pack_indices(np.array([4]), 2)
    with pytest.raises(ValueError):
        pack_indices(np.array([-1]), 8)
    with pytest.raises(ValueError):
        unpack_indices(b"\x00", 18, 1)


# ---------------------------------------------------------------------------------------------------------
# Entropy coding of tokens


def test_bits_for_levels():
    assert vc.bits_for_levels(LEVELS6) == 18
    assert vc.bits_for_levels([8] * 5) == 15
    assert vc.bits_for_levels([7, 5, 5, 5, 5]) == 13  # 4375 codes
    assert vc.bits_for_levels([2]) == 1


def test_coding_report_uniform_gains_nothing():
    rng = np.random.default_rng(0)
    r = token_coding_report(rng.integers(0, 8**6, size=(4, 32, 32)), LEVELS6)
    assert r["bits_packed"] == 18.0 and r["coding"] == "packed" and r["bits_kept"] == 18.0


def test_coding_report_skewed_digits_gain():
    rng = np.random.default_rng(0)
    r = token_coding_report(gauss_tokens(rng, (4, 32, 32), LEVELS6), LEVELS6)
    assert r["coding"] == "rans"
    assert r["bits_rans"] < 15.0 and r["bits_rans"] < r["entropy_bound"] + 0.5


def test_repeat_flags_help_static_content():
    rng = np.random.default_rng(0)
    idx = gauss_tokens(rng, (8, 16, 16), LEVELS6)
    for t in range(1, 8):  # 90% of positions repeat the token of the previous latent frame
        keep = rng.random((16, 16)) < 0.9
        idx[t] = np.where(keep, idx[t - 1], idx[t])
    r = token_coding_report(idx, LEVELS6)
    assert r["repeat_flags"] and r["bits_rans"] < 5.0


def test_temporal_delta_helps_slowly_changing_digits():
    rng = np.random.default_rng(0)
    d = np.zeros((6, 8, 16, 16), dtype=np.int64)
    d[:, 0] = rng.integers(0, 8, size=(6, 16, 16))
    for t in range(1, 8):  # each digit moves by one level with probability 0.3
        step = rng.choice([-1, 0, 1], size=(6, 16, 16), p=[0.15, 0.7, 0.15])
        d[:, t] = np.clip(d[:, t - 1] + step, 0, 7)
    idx = sum(d[i] * 8**i for i in range(6))
    r = token_coding_report(idx, LEVELS6)
    assert r["transforms"].count("delta") >= 5 and r["bits_rans"] < 11.0


@pytest.mark.parametrize(
    "levels,shape,kind",
    [
        (LEVELS6, (4, 16, 16), "gauss"),
        (LEVELS6, (1, 32, 32), "gauss"),
        ([8] * 5, (3, 20, 24), "gauss"),
        ([7, 5, 5, 5, 5], (2, 16, 16), "gauss"),
        ([8, 5, 5, 5], (4, 8, 8), "constant"),
        (LEVELS6, (2, 16, 16), "static"),
        (LEVELS6, (5, 16, 16), "mostly-static"),
        ([2, 2, 2], (3, 9, 7), "constant"),
        ([256, 3], (4, 32, 32), "gauss"),
    ],
)
def test_rans_is_lossless(levels, shape, kind):
    rng = np.random.default_rng(len(levels) + shape[0])
    k = int(np.prod(levels))
    if kind == "constant":
        idx = np.full(shape, k // 3, dtype=np.int64)
    elif kind == "static":
        idx = np.broadcast_to(gauss_tokens(rng, shape[1:], levels), shape).copy()
    elif kind == "mostly-static":
        idx = gauss_tokens(rng, shape, levels)
        for t in range(1, shape[0]):
            idx[t] = np.where(rng.random(shape[1:]) < 0.6, idx[t - 1], idx[t])
    else:
        idx = gauss_tokens(rng, shape, levels, sigma=0.8)
    coded = rans_encode(idx, levels)
    assert coded is not None and len(coded) < len(pack_indices(idx, vc.bits_for_levels(levels)))
    assert np.array_equal(rans_decode(coded, levels, shape), idx)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(2, 9), min_size=1, max_size=4),
    st.tuples(st.integers(1, 5), st.integers(1, 12), st.integers(1, 12)),
    st.floats(0.2, 3.0),
    st.floats(0.0, 1.0),
    st.integers(0, 2**31),
)
def test_rans_lossless_hypothesis(levels, shape, sigma, repeat, seed):
    rng = np.random.default_rng(seed)
    idx = gauss_tokens(rng, shape, levels, sigma)
    for t in range(1, shape[0]):
        idx[t] = np.where(rng.random(shape[1:]) < repeat, idx[t - 1], idx[t])
    coded = rans_encode(idx, levels)
    if coded is not None:
        assert len(coded) < len(pack_indices(idx, vc.bits_for_levels(levels)))
        assert np.array_equal(rans_decode(coded, levels, shape), idx)


def test_writer_keeps_entropy_coding_only_when_smaller(tmp_path):
    rng = np.random.default_rng(3)
    p = tmp_path / "t.vtok"
    hdr = header("tokens", h=16, w=16)
    skewed = gauss_tokens(rng, (2, 16, 16), LEVELS6)
    uniform = rng.integers(0, 8**6, size=(2, 16, 16))
    with VtokWriter(p, hdr) as w:
        w.write_chunk({"tokens": skewed}, 0, 8, 0)
        w.write_chunk({"tokens": uniform}, 8, 16, 2)
        w.write_chunk({"tokens": skewed}, 16, 24, 4, coding="packed")
    recs = list(VtokReader(p).records())
    assert [r.coding for r in recs] == ["rans", "packed", "packed"]
    packed_len = (2 * 16 * 16 * 18 + 7) // 8
    assert len(recs[0].raw) < packed_len and len(recs[1].raw) == packed_len == len(recs[2].raw)
    assert np.array_equal(recs[0].payload, skewed) and np.array_equal(recs[1].payload, uniform)
    assert np.array_equal(recs[2].payload, skewed)


# ---------------------------------------------------------------------------------------------------------
# Round trips, header, index, random access


def test_token_file_round_trip(token_file):
    path, expected = token_file
    r = VtokReader(path)
    assert r.version == vc.FORMAT_VERSION
    assert r.header["source"]["frame_count"] == expected[-1][1]
    assert r.header_initial["source"]["frame_count"] is None
    chunks = list(r.iter_token_chunks())
    assert len(chunks) == len(expected)
    for c, (f0, f1, l0, idx) in zip(chunks, expected, strict=True):
        assert (c.first_latent, c.first_frame, c.end_frame) == (l0, f0, f1)
        assert c.indices.dtype == np.int64 and np.array_equal(c.indices, idx)
    recs = [rec for rec in r.records() if rec.type == vc.RecordType.CHUNK]
    assert {rec.coding for rec in recs} == {"rans", "packed"}
    assert any(rec.coding == "rans" and rec.raw[1] == 1 for rec in recs)  # the repeat-flag model
    pk = list(r.audio_packets())
    assert [p.pts for p in pk] == [1024 * i for i in range(len(expected))]
    assert pk[3].data == bytes([3]) * 8 and pk[0].duration == 1024
    assert r.audio_extradata == b"\x12\x10"


def test_token_chunks_as_latents_match_fsq_codes(token_file):
    path, expected = token_file
    c = next(iter(VtokReader(path).iter_latent_chunks()))
    idx = expected[0][3]
    d0 = idx % 8
    assert c.latents.shape == (3, 1, 8, 8)
    assert np.array_equal(c.latents[0], (d0 - 4).astype(np.float32) / np.float32(4))


def test_file_matches_the_spec(token_file):
    path, expected = token_file
    data = path.read_bytes()
    spec = parse_by_spec(data)
    assert spec["version"] == (1, 1) and spec["header"]["model"]["family"] == "vidtok"
    end = spec["records"][-1]
    assert end[1] == 255 and end[3]["header_updates"] == {"source": {"frame_count": expected[-1][1]}}
    index = json.loads(end[4])
    assert [e[0] for e in index] == [rec[0] for rec in spec["records"][:-1]]
    assert index == [list(e) for e in VtokReader(path).index]
    tok = [rec for rec in spec["records"] if rec[1] == 5]
    assert {rec[3]["stream"] for rec in tok} == {0}
    packed = [rec for rec in tok if rec[2] == 0]
    assert packed and np.array_equal(
        unpack_indices(packed[0][4], 9, int(np.prod(packed[0][3]["shape"]))).reshape(packed[0][3]["shape"]),
        next(e[3] for e in expected if e[0] == packed[0][3]["frames"][0]),
    )
    # compact, sorted-key JSON
    assert json.dumps(spec["header"], separators=(",", ":"), sort_keys=True).encode() in data


def test_unknown_header_keys_are_preserved(tmp_path):
    p = tmp_path / "x.vtok"
    hdr = header("tokens", levels=[4, 4], h=2, w=2, my_tool={"note": "hi"})
    hdr["source"]["color"] = "bt709"
    with VtokWriter(p, hdr) as w:
        w.write_chunk({"tokens": np.zeros((1, 2, 2), dtype=np.int64)}, 0, 1, 0)
        w.close({"source": {"frame_count": 1}, "extra": [1, 2]})
    r = VtokReader(p)
    assert r.header["my_tool"] == {"note": "hi"} and r.header["source"]["color"] == "bt709"
    assert r.header["extra"] == [1, 2] and r.header["source"]["frame_count"] == 1


def test_header_validation(tmp_path):
    with pytest.raises(ContainerError, match="sha256"):
        vc.validate_header({**header("tokens"), "model": {"card": "m", "sha256": "xyz", "family": "vidtok"}})
    bad = header("tokens")
    del bad["source"]["fps"]
    with pytest.raises(ContainerError, match="source.fps"):
        VtokWriter(tmp_path / "x.vtok", bad)
    bad = header("tokens")
    bad["streams"][0]["codebook_size"] = 5
    with pytest.raises(ContainerError, match="FSQ levels"):
        vc.validate_header(bad)
    bad = header("tokens")
    bad["streams"][0]["kind"] = "motion"
    with pytest.raises(ContainerError, match="kind must be one of"):
        VtokWriter(tmp_path / "x.vtok", bad)
    assert no_part_files(tmp_path) and not (tmp_path / "x.vtok").exists()
    assert header("tokens")["source"]["fps"] == [30000, 1001]


def test_frozen_header_keys_cannot_be_updated(tmp_path):
    w = VtokWriter(tmp_path / "x.vtok", header("tokens"))
    with pytest.raises(ValueError, match="mode"):
        w.update_header({"mode": "latent"})
    with pytest.raises(ContainerError):
        w.update_header({"source": {"frame_count": -3}})
    w.abort()
    assert no_part_files(tmp_path)


def test_writer_refuses_misuse(tmp_path):
    with VtokWriter(tmp_path / "x.vtok", header("tokens", levels=[4, 4], h=2, w=2)) as w:
        with pytest.raises(ValueError, match="shape"):
            w.write_chunk({"tokens": np.zeros((1, 3, 2), dtype=np.int64)}, 0, 1, 0)
        with pytest.raises(ValueError, match="0..15"):
            w.write_chunk({"tokens": np.full((1, 2, 2), 16)}, 0, 1, 0)
        with pytest.raises(ValueError, match="unknown latent"):
            w.write_chunk({"latent": np.zeros((2, 1, 2, 2), dtype=np.float32)}, 0, 1, 0)
        with pytest.raises(ValueError, match="no audio"):
            w.write_audio(b"x", 0, 0, 1)
        w.write_chunk({"tokens": np.zeros((1, 2, 2), dtype=np.int64)}, 0, 1, 0)
        with pytest.raises(ValueError, match="contiguous"):
            w.write_chunk({"tokens": np.zeros((1, 2, 2), dtype=np.int64)}, 2, 5, 1)
        with pytest.raises(ValueError, match="contiguous"):
            w.mark_segment(1, 3)
        w.write_chunk({"tokens": np.zeros((1, 2, 2), dtype=np.int64)}, 1, 5, 1)


def test_random_access_starts_at_the_segment(token_file):
    path, expected = token_file
    r = VtokReader(path)
    seg_frames = [e.frames[0] for e in r.index if e.type == vc.RecordType.SEGMENT]
    assert seg_frames == [expected[2][0], expected[4][0]]
    for start, first_chunk in [
        (None, 0),
        (0, 0),
        (5, 0),
        (expected[2][0], 2),
        (expected[3][0] + 3, 2),
        (10**6, 4),
    ]:
        chunks = list(r.iter_token_chunks(start))
        assert chunks[0].first_frame == expected[first_chunk][0] and chunks[0].segment_start
        assert [c.first_latent for c in chunks] == [e[2] for e in expected[first_chunk:]]
        assert np.array_equal(chunks[0].indices, expected[first_chunk][3])
        starts = [c.segment_start for c in chunks]
        assert starts == [i == first_chunk or i in (2, 4) for i in range(first_chunk, len(expected))]


def test_unknown_record_types_are_skipped(tmp_path):
    p = tmp_path / "x.vtok"
    with VtokWriter(p, header("tokens", levels=[4, 4], h=2, w=2)) as w:
        w.write_chunk({"tokens": np.ones((1, 2, 2), dtype=np.int64)}, 0, 1, 0)
        w._record(77, 0, {"future": True}, b"later", None)
        w.write_chunk({"tokens": np.ones((1, 2, 2), dtype=np.int64)}, 1, 5, 1)
    r = VtokReader(p)
    recs = list(r.records())
    assert recs[1].type_name == "type 77" and recs[1].payload == b"later"
    assert len(list(r.iter_token_chunks())) == 2


def test_stats(token_file):
    path, expected = token_file
    s = VtokReader(path).stats()
    size = path.stat().st_size
    tokens = sum(e[3].size for e in expected)
    assert s["file_size"] == size and s["tokens"] == tokens
    assert s["records"] == {"chunk": 5, "audio": 5, "segment": 2}
    assert s["bits_per_token"] == pytest.approx(8 * size / tokens)
    assert s["bits_per_token_payload"] < s["bits_per_token"]
    assert s["bits_per_pixel"] == pytest.approx(8 * size / (expected[-1][1] * 64 * 64))
    assert s["token_codings"]["rans"] >= 1 and s["token_codings"]["packed"] >= 1


def test_empty_file_is_valid(tmp_path):
    p = tmp_path / "x.vtok"
    with VtokWriter(p, header("tokens")):
        pass
    r = VtokReader(p)
    assert list(r.records()) == [] and r.stats()["bits_per_token"] is None


# ---------------------------------------------------------------------------------------------------------
# Atomic writing


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_inside_writer_leaves_nothing(tmp_path, exc):
    p = tmp_path / "out.vtok"
    with pytest.raises(exc):
        with VtokWriter(p, header("tokens", levels=[4, 4], h=2, w=2)) as w:
            w.write_chunk({"tokens": np.zeros((1, 2, 2), dtype=np.int64)}, 0, 1, 0)
            assert not p.exists() and not no_part_files(tmp_path)  # written to a temporary file
            raise exc()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path):
    p = tmp_path / "out.vtok"
    p.write_bytes(b"precious")
    with pytest.raises(ContainerError, match="exists; pass --force"):
        VtokWriter(p, header("tokens"))
    assert p.read_bytes() == b"precious" and no_part_files(tmp_path)
    with VtokWriter(p, header("tokens"), force=True) as w:
        w.write_chunk({"tokens": np.zeros((1, 4, 6), dtype=np.int64)}, 0, 1, 0)
    assert VtokReader(p).streams[0].name == "tokens" and no_part_files(tmp_path)


def test_output_appearing_meanwhile_is_not_overwritten(tmp_path):
    p = tmp_path / "out.vtok"
    w = VtokWriter(p, header("tokens"))
    p.write_bytes(b"someone else")
    with pytest.raises(ContainerError, match="exists; pass --force"):
        w.close()
    assert p.read_bytes() == b"someone else" and no_part_files(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(ContainerError, match="does not exist"):
        VtokWriter(tmp_path / "nope" / "x.vtok", header("tokens"))


# ---------------------------------------------------------------------------------------------------------
# Damaged files


def record_ends(path: Path) -> list[tuple[int, int, int | None]]:
    """(end offset, record number, end_frame of chunks) for each record of a valid file."""
    recs = parse_by_spec(path.read_bytes())["records"]
    out = []
    for k, (_, rtype, _, meta, _) in enumerate(recs[:-1]):
        out.append((recs[k + 1][0], k, meta["frames"][1] if rtype == 5 else None))
    return out


def test_truncated_file_reports_the_last_good_frame(tmp_path, token_file):
    path, expected = token_file
    data = path.read_bytes()
    ends = record_ends(path)
    first = parse_by_spec(data)["records"][0][0]
    cuts = [
        first + 3,
        ends[0][0] - 1,
        ends[0][0],
        ends[3][0] + 7,
        ends[6][0] + 1,
        ends[-1][0],
        len(data) - 17,
    ]
    cuts += [len(data) - 1, len(data) - 9]
    q = tmp_path / "cut.vtok"
    for cut in cuts:
        q.write_bytes(data[:cut])
        good = [e for e in ends if e[0] <= cut and e[2] is not None]
        with pytest.raises(ContainerError) as ei:
            VtokReader(q)
        msg = str(ei.value)
        assert str(q) in msg and "\n" not in msg
        if good:
            assert f"cut short after frame {good[-1][2] - 1} (record {good[-1][1]})" in msg
        else:
            assert "cut short before the first frame" in msg
        r = VtokReader(q, recover=True)
        assert "cut short" in r.problem
        chunks = list(r.iter_token_chunks())
        assert len(chunks) == len(good)
        for c, e in zip(chunks, expected, strict=False):
            assert np.array_equal(c.indices, e[3])
        assert r.last_good_frame == (good[-1][2] - 1 if good else None)


def test_truncated_inside_the_header(tmp_path, token_file):
    data = token_file[0].read_bytes()
    q = tmp_path / "cut.vtok"
    for cut in (0, 5, 12, 40):
        q.write_bytes(data[:cut])
        with pytest.raises(ContainerError, match="not a .vtok file|cut short inside its header"):
            VtokReader(q, recover=True)


def test_flipped_bits_name_the_record(tmp_path, token_file):
    path, _ = token_file
    data = path.read_bytes()
    spec = parse_by_spec(data)
    q = tmp_path / "flip.vtok"
    hlen = struct.unpack_from("<I", data, 12)[0]
    b = bytearray(data)
    b[16 + hlen // 2] ^= 0x04
    q.write_bytes(bytes(b))
    with pytest.raises(ContainerError, match="header fails its CRC"):
        VtokReader(q)
    for k, (off, rtype, _, meta, payload) in enumerate(spec["records"][:-1]):
        mlen = struct.unpack_from("<BBHQI", data, off)[4]
        for where in (off + 16 + mlen // 2, off + 16 + mlen + len(payload) // 2):
            if where >= off + 16 + mlen + len(payload):
                continue  # no payload (segment marker)
            b = bytearray(data)
            b[where] ^= 0x10
            q.write_bytes(bytes(b))
            with pytest.raises(ContainerError) as ei:
                list(VtokReader(q).records())
            msg = str(ei.value)
            assert f"record {k} ({vc.RecordType.name(rtype)}" in msg and "CRC" in msg, msg
            if rtype in (1, 2):
                f0, f1 = meta["frames"]
                assert (f"frames {f0}-{f1 - 1}" if f1 - f0 > 1 else f"frame {f0}") in msg
    b = bytearray(data)
    b[spec["records"][-1][0] + 20] ^= 1
    q.write_bytes(bytes(b))
    with pytest.raises(ContainerError, match="footer"):
        VtokReader(q)


def test_wrong_magic_and_versions(tmp_path, token_file):
    data = token_file[0].read_bytes()
    q = tmp_path / "x.vtok"
    q.write_bytes(b"RIFF" + data[4:])
    with pytest.raises(ContainerError, match="not a .vtok file"):
        VtokReader(q)
    q.write_bytes(b"")
    with pytest.raises(ContainerError, match="not a .vtok file"):
        VtokReader(q)
    hlen = struct.unpack_from("<I", data, 12)[0]

    def with_version(major, minor):
        pre = struct.pack("<8sHHI", vc.MAGIC, major, minor, hlen) + data[16 : 16 + hlen]
        return pre + struct.pack("<I", zlib.crc32(pre)) + data[16 + hlen + 4 :]

    q.write_bytes(with_version(2, 3))
    with pytest.raises(ContainerError, match=r"version 2\.3.*upgrade vidtok"):
        VtokReader(q)
    q.write_bytes(with_version(1, 7))  # a newer minor version stays readable
    assert VtokReader(q).version == (1, 7)
    with pytest.raises(ContainerError, match="cannot read"):
        VtokReader(tmp_path / "missing.vtok")


def _recovery_problem(path: Path) -> str:
    """What reading every payload of ``path`` in recovery mode reports: the reader's problem or its error."""
    try:
        r = VtokReader(path, recover=True)
        for rec in r.records():
            _ = rec.payload
        return r.problem
    except ContainerError as e:
        return str(e)


def test_damage_behind_a_valid_crc(tmp_path, token_file):
    """Records whose CRC was recomputed after damage: JSON, shapes, sizes and lengths are still checked."""
    path, _ = token_file
    data = path.read_bytes()
    spec = parse_by_spec(data)
    k_tok = next(k for k, r in enumerate(spec["records"]) if r[1] == 5 and r[2] == 0)
    off, rtype, flags, meta, payload = spec["records"][k_tok]
    q = tmp_path / "x.vtok"
    cases = {
        "JSON": dict(meta=b"{not json"),
        "shape": dict(meta=json.dumps({**meta, "shape": [9, 9, 9]}).encode()),
        "payload is": dict(payload=payload[:-1]),
    }
    meta_b = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
    cases["coding"] = dict(meta=meta_b, head=(rtype, 9, 0, len(payload), len(meta_b)))
    for what, kw in cases.items():
        q.write_bytes(rewrite_record(data, k_tok, **kw))
        msg = _recovery_problem(q)  # the record changed length, so the footer no longer fits
        assert msg and what in msg and f"record {k_tok}" in msg and "\n" not in msg, msg
    # a huge payload length is refused without allocating it
    b = bytearray(data)
    struct.pack_into("<Q", b, off + 4, 1 << 60)
    q.write_bytes(bytes(b))
    with pytest.raises(ContainerError, match="runs past the end of the file"):
        list(VtokReader(q).records())


def test_damaged_rans_payload_with_valid_crc(tmp_path, token_file):
    path, _ = token_file
    data = path.read_bytes()
    spec = parse_by_spec(data)
    k = next(k for k, r in enumerate(spec["records"]) if r[1] == 5 and r[2] == 1)
    payload = spec["records"][k][4]
    q = tmp_path / "x.vtok"
    rng = np.random.default_rng(0)
    for _ in range(30):
        p = bytearray(payload)
        p[int(rng.integers(0, len(p)))] ^= int(rng.integers(1, 256))
        q.write_bytes(rewrite_record(data, k, payload=bytes(p)))
        try:
            recs = list(VtokReader(q).records())
            out = recs[k].payload
            assert out.shape == tuple(spec["records"][k][3]["shape"]) and out.dtype == np.int64
        except ContainerError as e:
            assert f"record {k}" in str(e)


# ---------------------------------------------------------------------------------------------------------
# Fuzzing: any mutation gives a good read or a ContainerError, nothing else


def read_everything(path: Path, recover: bool) -> None:
    r = VtokReader(path, recover=recover)
    for rec in r.records():
        _ = rec.payload, rec.frames, rec.latents, rec.coding
    if len(r.streams) == 1:
        for c in r.iter_latent_chunks(start_frame=5):
            assert c[1].dtype == np.float32
    list(r.audio_packets())
    r.stats()
    _ = r.audio_extradata


@pytest.fixture(scope="module")
def fuzz_sources(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("fuzz")
    write_token_file(d / "t.vtok", n_chunks=3)
    write_latent_file(d / "l.vtok", "float16", n_chunks=2)
    return {"tokens": (d / "t.vtok").read_bytes(), "latent": (d / "l.vtok").read_bytes()}


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=9)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
)


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, pos, arg in ops:
        pos = pos % (len(b) + 1)
        if op == "flip" and pos < len(b):
            b[pos] ^= arg
        elif op == "truncate":
            del b[pos:]
        elif op == "insert":
            b[pos:pos] = arg
        elif op == "delete":
            del b[pos : pos + arg]
    return bytes(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["tokens", "latent"]), st.lists(mutation, min_size=1, max_size=3), st.booleans())
def test_fuzz_mutated_files(tmp_path, fuzz_sources, which, ops, recover):
    q = tmp_path / "fuzz.vtok"
    q.write_bytes(mutate(fuzz_sources[which], ops))
    try:
        read_everything(q, recover)
    except ContainerError as e:
        assert "\n" not in str(e) and str(q) in str(e)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["tokens", "latent"]),
    st.integers(0, 100),
    st.sampled_from(["meta", "payload", "fixed", "header"]),
    st.lists(mutation, min_size=1, max_size=2),
)
def test_fuzz_behind_valid_crcs(tmp_path, fuzz_sources, which, k, part, ops):
    """Mutations inside the header or one record (footer included) with the CRC recomputed."""
    data = fuzz_sources[which]
    spec = parse_by_spec(data)
    k = k % len(spec["records"])
    off, rtype, flags, meta, payload = spec["records"][k]
    mlen = struct.unpack_from("<BBHQI", data, off)[4]
    meta_b = data[off + 16 : off + 16 + mlen]
    if part == "header":
        hlen = struct.unpack_from("<I", data, 12)[0]
        body = mutate(data[16 : 16 + hlen], ops)
        pre = data[:12] + struct.pack("<I", len(body)) + body
        new = pre + struct.pack("<I", zlib.crc32(pre)) + data[16 + hlen + 4 :]
    elif part == "meta":
        new = rewrite_record(data, k, meta=mutate(meta_b, ops))
    elif part == "payload":
        new = rewrite_record(data, k, payload=mutate(payload, ops))
    else:
        fixed = mutate(
            data[off : off + 16], [(op, p % 16, a) for op, p, a in ops if op == "flip"] or [("flip", 0, 1)]
        )
        new = rewrite_record(data, k, head=struct.unpack("<BBHQI", fixed), meta=meta_b, payload=payload)
    q = tmp_path / "fuzz.vtok"
    q.write_bytes(new)
    for recover in (False, True):
        try:
            read_everything(q, recover)
        except ContainerError as e:
            assert "\n" not in str(e)


# ---------------------------------------------------------------------------------------------------------
# Format 1.1: named streams, VQ indices, several streams per chunk, the 1.0 view


def zipf_tokens(rng, shape, k: int, a: float = 1.3) -> np.ndarray:
    """VQ indices with a skewed (Zipf-like) distribution over a shuffled codebook."""
    perm = rng.permutation(k)
    return perm[np.minimum(rng.zipf(a, size=shape) - 1, k - 1)]


def two_stream_header(k: int = 1000, **kw):
    streams = [
        stream_entry("latent", "continuous", (2, 3, 4), time_axis=1, dtype="float32"),
        stream_entry("codes", "vq", (3, 4), time_axis=0, codebook_size=k, **kw),
    ]
    return header("tokens", h=3, w=4, streams=streams)


@pytest.mark.parametrize("k", [2, 200, 256, 257, 1000, 8192, 65536, 1 << 20])
def test_vq_round_trip_and_packed_bits(tmp_path, k):
    rng = np.random.default_rng(k)
    p = tmp_path / "vq.vtok"
    streams = [stream_entry("codes", "vq", (5, 7), time_axis=0, codebook_size=k)]
    uniform = rng.integers(0, k, size=(3, 5, 7))
    skewed = zipf_tokens(rng, (3, 5, 7), k)
    with VtokWriter(p, header(streams=streams, h=5, w=7)) as w:
        w.write_chunk({"codes": uniform}, 0, 9, 0)
        w.write_chunk({"codes": skewed}, 9, 21, 3)
        w.write_chunk({"codes": skewed}, 21, 33, 6, coding="packed")
    r = VtokReader(p)
    assert r.streams[0].bits == max(1, math.ceil(math.log2(k)))
    chunks = list(r.iter_chunks())
    for c, want in zip(chunks, [uniform, skewed, skewed], strict=True):
        assert c.latents["codes"].dtype == np.int64 and np.array_equal(c.latents["codes"], want)
    recs = list(r.records())
    assert len(recs[2].raw) == (uniform.size * r.streams[0].bits + 7) // 8 and recs[2].coding == "packed"
    assert recs[0].coding == "packed"  # uniform indices: rANS cannot gain


def test_vq_rans_is_chosen_when_smaller(tmp_path):
    rng = np.random.default_rng(5)
    p = tmp_path / "vq.vtok"
    k = 8192
    streams = [stream_entry("codes", "vq", (16, 16), time_axis=0, codebook_size=k)]
    skewed = np.minimum(rng.zipf(1.5, size=(4, 16, 16)) - 1, k - 1)  # frequent codes have small indices
    with VtokWriter(p, header(streams=streams, h=16, w=16)) as w:
        w.write_chunk({"codes": skewed}, 0, 16, 0)
    (rec,) = list(VtokReader(p).records())
    assert rec.coding == "rans" and len(rec.raw) < (skewed.size * 13 + 7) // 8
    assert np.array_equal(rec.payload, skewed)
    rep = token_coding_report(skewed, codebook_size=k)
    assert (
        rep["radices"] == [256, 32]
        and rep["coding"] == "rans"
        and rep["bits_rans"] < rep["bits_packed"] == 13
    )


def test_vq_stream_declared_packed_is_never_entropy_coded(tmp_path):
    p = tmp_path / "vq.vtok"
    streams = [stream_entry("codes", "vq", (16, 16), time_axis=0, codebook_size=1024, coding="packed")]
    with VtokWriter(p, header(streams=streams, h=16, w=16)) as w:
        w.write_chunk({"codes": np.zeros((2, 16, 16), dtype=np.int64)}, 0, 8, 0)
    assert [rec.coding for rec in VtokReader(p).records()] == ["packed"]


def test_two_streams_per_chunk(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "two.vtok"
    expected = []
    with VtokWriter(p, two_stream_header()) as w:
        for i, (f0, f1, l0, t) in enumerate(causal_ranges(3)):
            if i == 2:
                w.mark_segment(f0, l0)
            lat = rng.standard_normal((2, t, 3, 4)).astype(np.float32)
            codes = zipf_tokens(rng, (t, 3, 4), 1000)
            w.write_chunk({"codes": codes, "latent": lat}, f0, f1, l0)
            expected.append((f0, f1, l0, t, lat, codes))
        with pytest.raises(ValueError, match="missing codes"):
            w.write_chunk({"latent": lat}, f1, f1 + 8, l0 + t)
    r = VtokReader(p)
    assert [s.name for s in r.streams] == ["latent", "codes"] and r.streams[1].kind == "vq"
    chunks = list(r.iter_chunks())
    for c, (f0, f1, l0, t, lat, codes) in zip(chunks, expected, strict=True):
        assert (c.first_frame, c.end_frame, c.first_latent, c.end_latent) == (f0, f1, l0, l0 + t)
        assert np.array_equal(c.latents["latent"], lat) and np.array_equal(c.latents["codes"], codes)
    assert [c.segment_start for c in chunks] == [True, False, True, False]
    assert [c.first_frame for c in r.iter_chunks(expected[2][0] + 1)] == [e[0] for e in expected[2:]]
    assert [rec.stream for rec in r.records() if rec.type == vc.RecordType.CHUNK][:2] == ["latent", "codes"]
    s = r.stats()
    assert s["tokens"] == sum(e[5].size for e in expected) and s["streams"]["latent"]["records"] == 4
    with pytest.raises(ContainerError, match="2 streams"):
        list(r.iter_latent_chunks())


def test_damaged_stream_records_are_refused(tmp_path):
    rng = np.random.default_rng(2)
    p = tmp_path / "two.vtok"
    with VtokWriter(p, two_stream_header()) as w:
        for f0, f1, l0, t in causal_ranges(2):
            w.write_chunk(
                {"latent": np.ones((2, t, 3, 4)), "codes": zipf_tokens(rng, (t, 3, 4), 1000)}, f0, f1, l0
            )
    data = p.read_bytes()
    spec = parse_by_spec(data)
    q = tmp_path / "bad.vtok"
    meta = spec["records"][1][3]
    cases = {
        "does not match the header": dict(meta=json.dumps({**meta, "stream": 0}).encode()),
        "not one of the header's": dict(meta=json.dumps({**meta, "stream": 7}).encode()),
        "differs from the other streams": dict(meta=json.dumps({**meta, "latents": [0, 2]}).encode()),
        "codebook": dict(payload=pack_indices(np.full(12, 1023), 10)),
    }
    for what, kw in cases.items():
        q.write_bytes(rewrite_record(data, 1, **kw))
        msg = _recovery_problem(q)
        assert msg and what in msg and "record 1" in msg and "\n" not in msg, (what, msg)
    # a stream chunk cut off after its first stream: the chunk is incomplete, the frame before it is the last
    ends = record_ends(p)
    q.write_bytes(data[: ends[2][0]])
    with pytest.raises(ContainerError, match=r"cut short after frame 0 \(record 1\)"):
        VtokReader(q)


def test_record_types_of_the_other_version_are_refused(tmp_path):
    p = tmp_path / "x.vtok"
    with VtokWriter(p, header("tokens", levels=[4, 4], h=2, w=2)) as w:
        w._record(
            vc.RecordType.TOKENS,
            0,
            {"frames": [0, 1], "latents": [0, 1], "shape": [1, 2, 2]},
            b"\0\0",
            (0, 1),
        )
    with pytest.raises(ContainerError, match="a tokens record in a format 1.1 file"):
        list(VtokReader(p).records())


def v10_file(path: Path, mode: str) -> np.ndarray:
    """A format-1.0 file written by hand from the 1.0 spec: one chunk of mode ``tokens`` or ``latent``."""
    if mode == "tokens":
        lat = {"channels": 2, "dtype": "float16", "fsq_levels": [4, 4]}
        value = np.array([[[3, 14]]], dtype=np.int64)
        rtype, payload, shape = 2, pack_indices(value, 4), [1, 1, 2]
    else:
        lat = {"channels": 2, "dtype": "float16", "fsq_levels": None}
        value = np.arange(4, dtype=np.float32).reshape(2, 1, 1, 2)
        rtype, payload, shape = 1, value.astype("<f2").tobytes(), [2, 1, 1, 2]
    hdr = {
        "tool_version": "0.1.0",
        "model": {"card": "m", "sha256": SHA, "family": "vidtok"},
        "mode": mode,
        "latent": {**lat, "height": 1, "width": 2, "temporal_factor": 4, "spatial_factor": 8},
        "source": {"width": 16, "height": 8, "frame_count": 1, "fps": [30, 1]},
        "padding": {"pad": [0, 0, 0, 0], "crop": None, "frames_padded": 0},
        "chunking": {"frames_per_record": 1, "segment_frames": None},
        "audio": None,
    }
    hj = json.dumps(hdr, separators=(",", ":"), sort_keys=True).encode()
    pre = struct.pack("<8sHHI", b"\x89VTK\r\n\x1a\n", 1, 0, len(hj)) + hj
    pre += struct.pack("<I", zlib.crc32(pre))

    def record(rt: int, meta: dict, body: bytes) -> bytes:
        m = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
        rec = struct.pack("<BBHQI", rt, 0, 0, len(body), len(m)) + m + body
        return rec + struct.pack("<I", zlib.crc32(rec))

    chunk = record(rtype, {"frames": [0, 1], "latents": [0, 1], "shape": shape}, payload)
    index = json.dumps([[len(pre), rtype, 0, 1]]).encode()
    footer = record(255, {"header_updates": {}, "records": 1}, index)
    path.write_bytes(pre + chunk + footer + struct.pack("<Q8s", len(pre) + len(chunk), b"VTOK_END"))
    return value


@pytest.mark.parametrize("mode", ["tokens", "latent"])
def test_format_1_0_reads_as_its_1_1_view(tmp_path, mode):
    p = tmp_path / "old.vtok"
    value = v10_file(p, mode)
    r = VtokReader(p)
    assert r.version == (1, 0) and r.header["mode"] == mode
    (s,) = r.streams
    assert s.name == mode and s.kind == ("fsq" if mode == "tokens" else "continuous")
    assert r.header["streams"] == [s.to_dict()] and r.header["frame_layout"]["spatial_factor"] == 8
    (c,) = list(r.iter_chunks())
    assert np.array_equal(c.latents[mode], value) and (c.first_frame, c.end_frame) == (0, 1)
    assert r.stats()["records"] == {mode: 1}
