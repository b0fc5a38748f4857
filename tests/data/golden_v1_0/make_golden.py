"""Writes the format-1.0 golden files with the release that wrote format 1.0 (commit b79b1d1).

Run once from the repository root with that release installed: ``python tests/data/golden_v1_0/make_golden.py``.
It writes ``*.vtok`` and ``expected.json`` (sha256 of every decoded frame, frame counts, audio packet
count) next to itself. The files are then test data: later releases must decode them to the same frames
(up to float rounding in the model). ``frames.npz`` holds those decoded frames (uint8, one array per file);
it was added later, decoded by a release whose frames still hashed to ``expected.json`` (commit 38d4be6),
and the test checks it against the hashes.

- ``kl_audio.vtok``: the embedded default model (KL, float16 latents), 9 of 20 frames of a synthetic
  64x48 clip with 1.0 s of AAC audio (``--max-frames 9``: this release stored all of the audio).
- ``fsq.vtok``: the official-format FSQ fixture of ``../shared/reference/vidtok/vidtok_fsq_causal_488_262144``
  (262144 codes, rANS-coded tokens), 13 frames of 48x64, two segments of 9 frames (``--segment-frames 9``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))


def synthetic_clip(path: Path, frames: int, width: int, height: int, audio_seconds: float) -> None:
    """A moving colour pattern at 25 fps, with a sine tone of ``audio_seconds`` when > 0."""
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, size=(height * 2, width * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = {"crf": "10", "threads": "1"}
        a = None
        if audio_seconds > 0:
            a = out.add_stream("aac", rate=48000)
            a.layout = "mono"
        for i in range(frames):
            img = np.ascontiguousarray(base[i : i + height, 2 * i : 2 * i + width])
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            n = int(48000 * audio_seconds)
            t = np.arange(n) / 48000.0
            pcm = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            for s in range(0, n, 1024):
                fr = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(pcm[:, s : s + 1024]), format="fltp", layout="mono"
                )
                fr.sample_rate = 48000
                fr.pts = s
                fr.time_base = Fraction(1, 48000)
                for p in a.encode(fr):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)


def frame_hashes(frames: list[np.ndarray]) -> list[str]:
    return [hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest() for f in frames]


def main() -> None:
    import tempfile

    from vidtok_cli import codec, container
    from vidtok_cli.loading import convert_checkpoint, load_model

    sys.path.insert(0, str(HERE.parents[1]))
    from tests.helpers import VIDTOK_REF, fixture_config

    expected: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "clip_audio.mp4"
        synthetic_clip(src, 20, 64, 48, 1.0)
        codec.encode_file(src, HERE / "kl_audio.vtok", None, max_frames=9, device="cpu", force=True)
        src2 = tmp / "clip.mp4"
        synthetic_clip(src2, 13, 48, 64, 0.0)
        name = "vidtok_fsq_causal_488_262144"
        conv = convert_checkpoint(
            VIDTOK_REF / name / "model.ckpt", tmp / f"{name}.safetensors", config=fixture_config(name)
        )
        fsq = load_model(conv, device="cpu")
        codec.encode_file(
            src2, HERE / "fsq.vtok", fsq, segment_frames=9, chunk_frames=4, device="cpu", force=True
        )
        for stem, weights in (("kl_audio", None), ("fsq", conv)):
            path = HERE / f"{stem}.vtok"
            out = tmp / f"{stem}_png"
            codec.decode_file(path, out, weights=weights, fmt="png", device="cpu", force=True)
            import av as _av

            frames = []
            for p in sorted(out.glob("*.png")):
                with _av.open(str(p)) as c:
                    frames.append(next(c.decode(video=0)).to_ndarray(format="rgb24"))
            r = container.VtokReader(path)
            expected[stem] = {
                "frames": len(frames),
                "height": int(frames[0].shape[0]),
                "width": int(frames[0].shape[1]),
                "frame_sha256": frame_hashes(frames),
                "audio_packets": len(list(r.audio_packets())),
                "mode": r.header["mode"],
            }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
