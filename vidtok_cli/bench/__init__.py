"""The evaluation protocol of ``vidtok bench``: PSNR/SSIM/LPIPS/FVD, speed and memory, rate, RD vs codecs.

The default protocol (``vidtok``) is the official VidTok evaluation (``scripts/inference_evaluate.py``;
see docs/BENCH.md and METRICS.md):

1. Frames are sampled with ``interval = round(src_fps / 30)`` (every ``interval``-th decoded frame)
   over the **whole** video and cut into consecutive clips of 17 frames (16 for non-causal models);
   the last clip is padded by repeating its final frame, and the copies are scored like real frames.
2. Each clip: uint8 / 255 in float32, short side resized to 256 (bilinear, antialias), centre crop
   256x256, into [-1, 1], encoded and decoded on its own in float32.
3. Output ``clamp(-1, 1)`` then to [0, 1]; PSNR, SSIM and LPIPS per frame against the float ground
   truth; FVD over all clips (I3D features of every ground-truth clip and its reconstruction).
4. Every value is the mean over every scored frame of every video (frame-weighted).

Besides the float output, the same metrics are computed on the 8-bit output (rounded to uint8, as
``vidtok decode`` writes it), reported as ``psnr_u8`` etc. Every clip is also written into a real
``.vtok`` file (tokens for FSQ, float16 latents for KL) whose size is the rate.

``protocol="custom"`` changes the sampling rate, size, crop, clip length and precision;
``long_video=True`` streams whole videos through ``vidtok_cli.stream`` instead (the v1.1 tables'
protocol). Any `Tokenizer` can be benchmarked: the model is used only through the interface, and
``load_model("trivial")`` is the baseline codec (``vidtok bench --model trivial`` / ``--baseline``).

Library use::

    from vidtok_cli.bench import BenchConfig, run_bench
    result = run_bench(["videos/"], load_model("vidtok-kl-causal-488-4chn"), BenchConfig())
    result.to_json("results.json"); print(result.overall)

Modules: ``config`` (settings, metric lists, the protocol's description), ``videos`` (inputs),
``subject`` (the model under test, :class:`IdentityModel`), ``clips`` (frames to clips), ``scoring``
(metrics and means), ``rate`` (.vtok sizes), ``samples`` (side-by-side files), ``speed`` (timing and
memory), ``result`` (BenchResult, JSON/CSV), ``state`` (accumulators and the clip loop), ``long_video``
(the streamed protocol), ``runner`` (``run_bench``). The terminal report is ``vidtok_cli.cli.bench_report``.
"""

from __future__ import annotations

from .config import BENCH_METRICS, BenchConfig
from .result import BenchResult
from .runner import run_bench
from .scoring import score_frames
from .subject import IdentityModel
from .videos import VIDEO_EXTENSIONS, collect_videos

__all__ = [
    "BENCH_METRICS",
    "BenchConfig",
    "BenchResult",
    "IdentityModel",
    "VIDEO_EXTENSIONS",
    "collect_videos",
    "run_bench",
    "score_frames",
]
