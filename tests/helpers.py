"""Helpers shared by the test modules: the vidtok command (in-process and as a subprocess), the reference
data in ../shared/reference, and small synthetic videos, models and training configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from vidtok_cli.train.config import TrainConfig

# ---------------------------------------------------------------------------------------------------
# The vidtok command
# ---------------------------------------------------------------------------------------------------


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m vidtok_cli ARGS` as a subprocess, offline: for the few tests that need a real process."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vidtok_cli", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
        timeout=300,
    )  # fmt: skip


def cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`vidtok ARGS` run in this process through the console script's entry point (`vidtok_cli.cli.main`,
    which turns errors into one-line messages), offline; the same exit code, stdout and stderr as `run`."""
    from huggingface_hub import constants as hf_constants
    from typer.testing import CliRunner

    from vidtok_cli.cli import main

    saved_argv, saved_cwd = sys.argv, os.getcwd()
    saved_hf = hf_constants.HF_HUB_OFFLINE, hf_constants.HF_HUB_CACHE
    code: int = 0
    with CliRunner().isolation(env={"HF_HUB_OFFLINE": "1", **(env or {})}) as (out, err, _):
        sys.argv = ["vidtok", *args]
        # what a fresh process would read from its environment when huggingface_hub is imported
        hf_constants.HF_HUB_OFFLINE = True
        hf_constants.HF_HUB_CACHE = os.environ.get("HF_HUB_CACHE", hf_constants.HF_HUB_CACHE)
        if cwd is not None:
            os.chdir(cwd)
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.argv = saved_argv
            os.chdir(saved_cwd)
            hf_constants.HF_HUB_OFFLINE, hf_constants.HF_HUB_CACHE = saved_hf
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return subprocess.CompletedProcess(["vidtok", *args], code, stdout, stderr)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    """The command failed with exit code `code` and a single stderr line, no traceback; returns the line."""
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


# ---------------------------------------------------------------------------------------------------
# Reference data in ../shared/reference (produced by the official code)
# ---------------------------------------------------------------------------------------------------

SHARED = Path(os.environ.get("VIDTOK_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REFERENCE = SHARED / "reference"
VIDTOK_REF = REFERENCE / "vidtok"
VIDTWIN_REF = REFERENCE / "vidtwin" / "vidtwin_structure_7_7_8_dynamics_7_8"  # model.ckpt, config.json, io*
MANIFESTS = REFERENCE / "manifests"
MISSING_REFERENCE = "missing-reference"  # the one fixture name when the reference data is absent


def require_reference(path: Path = VIDTOK_REF) -> Path:
    """`path` inside the reference data; fails the test (never skips it) when it is not there."""
    if not path.exists():
        pytest.fail(
            f"reference data not found: {path} does not exist. Put the shared data folder beside the "
            f"repository (../shared) or set VIDTOK_SHARED to its path (now {SHARED}).",
            pytrace=False,
        )
    return path


def fixture_names() -> list[str]:
    """Names of the official-format fixtures (one folder each with model.ckpt, config.json, io.*); a single
    placeholder when the reference data is missing, so that the parametrized tests fail rather than vanish."""
    if not VIDTOK_REF.is_dir():
        return [MISSING_REFERENCE]
    return sorted(p.name for p in VIDTOK_REF.iterdir() if (p / "model.ckpt").is_file())


def fixture_config(name: str) -> dict[str, Any]:
    """The fixture's architecture as the official YAML structure (model.params.*_config)."""
    c = json.loads((VIDTOK_REF / name / "config.json").read_text())
    reg = {"target": c["regularizer"]["target"], "params": c["regularizer"].get("params", {})}
    return {
        "model": {
            "target": c["engine_target"],
            "params": {
                "encoder_config": c["encoder"],
                "decoder_config": {
                    "target": c["decoder"]["target"],
                    "params": "${model.params.encoder_config.params}",
                },
                "regularizer_config": reg,
            },
        }
    }


def fixture_io(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, io.json) of a fixture."""
    from safetensors.torch import load_file

    return load_file(VIDTOK_REF / name / "io.safetensors"), json.loads(
        (VIDTOK_REF / name / "io.json").read_text()
    )


# ---------------------------------------------------------------------------------------------------
# Synthetic videos, written with PyAV directly (independent of VideoWriter)
# ---------------------------------------------------------------------------------------------------


def _pattern(i: int, h: int, w: int) -> np.ndarray:
    """A moving gradient; smooth enough that lossy coding keeps it within a few levels."""
    y = np.arange(h)[:, None]
    x = np.arange(w)[None, :]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x * 200 // max(w - 1, 1) + 4 * i) % 256
    img[..., 1] = y * 200 // max(h - 1, 1) + 20
    img[..., 2] = (6 * i) % 200 + 20
    return img


def make_video(
    path: Path,
    n: int = 60,
    w: int = 32,
    h: int = 24,
    fps: Fraction | int = 30,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    gop: int | None = None,
    rotation: int | None = None,
    hflip: bool = False,
    lossless: bool = False,
) -> np.ndarray:
    fps = Fraction(fps)
    out = av.open(str(path), "w")
    s = out.add_stream(codec, rate=fps)
    s.width, s.height, s.pix_fmt = w, h, pix_fmt
    s.time_base = 1 / fps
    opts = {"preset": "ultrafast"}
    if codec == "libx265":
        opts["x265-params"] = "log-level=error" + (":lossless=1" if lossless else "")
    elif lossless:
        opts["qp"] = "0"
    s.codec_context.options = opts
    if gop:
        s.codec_context.gop_size = gop
    if rotation is not None or hflip:
        s.set_display_rotation(rotation or 0, hflip=hflip)
    frames = np.stack([_pattern(i, h, w) for i in range(n)]) if n else np.zeros((0, h, w, 3), np.uint8)
    for i, img in enumerate(frames):
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts, f.time_base = i, 1 / fps
        for p in s.encode(f):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return frames


def make_audio_only(path: Path, seconds: float = 0.5) -> None:
    out = av.open(str(path), "w")
    s = out.add_stream("aac", rate=48000)
    s.layout = "stereo"
    t = np.arange(int(48000 * seconds)) / 48000
    x = np.stack([np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
    f = av.AudioFrame.from_ndarray(x, format="fltp", layout="stereo")
    f.sample_rate, f.pts = 48000, 0
    for p in s.encode(f):
        out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()


def faststart_video(tmp_path: Path, n: int = 8) -> tuple[bytes, list[tuple[int, int]]]:
    p = tmp_path / "fs.mp4"
    out = av.open(str(p), "w", options={"movflags": "+faststart"})
    s = out.add_stream("libx264", rate=30)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    s.codec_context.gop_size = 1
    for i in range(n):
        for pk in s.encode(
            av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 30, np.uint8), format="rgb24")
        ):
            out.mux(pk)
    for pk in s.encode():
        out.mux(pk)
    out.close()
    with av.open(str(p)) as c:
        pos = [(pk.pos, pk.size) for pk in c.demux(video=0) if pk.size]
    return p.read_bytes(), pos


def write_video(path: Path, frames: int = 12, h: int = 24, w: int = 32, fps: int = 8, seed: int = 0) -> Path:
    """A smooth moving colour pattern as H.264 MP4 (decodes to nearly the same frames everywhere)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "12"}
        for t in range(frames):
            img = np.stack(
                [
                    128 + 100 * np.sin((xx + 2 * t + base[0]) / 5.0),
                    128 + 100 * np.cos((yy + t + base[1]) / 4.0),
                    128 + 60 * np.sin((xx + yy + base[2]) / 7.0),
                ],
                -1,
            ).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


# ---------------------------------------------------------------------------------------------------
# Models and training
# ---------------------------------------------------------------------------------------------------


class FakeI3D(nn.Module):
    """Has the StyleGAN-V torchscript signature; checks the input contract and returns 400-d features."""

    def __init__(self, out_dim: int = 400) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.proj = nn.Parameter(torch.randn(3 * 8 * 8, out_dim, generator=g), requires_grad=False)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ):
        assert not rescale, "rescale must be False"
        assert not resize, "resize must be False"
        assert return_features, "return_features must be True"
        assert x.dim() == 5 and x.size(1) == 3 and x.size(3) == 224 and x.size(4) == 224, "bad shape"
        assert x.dtype == torch.float32, "bad dtype"
        assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0, "not in [-1, 1]"
        pooled = F.adaptive_avg_pool2d(x.mean(dim=2), [8, 8]).flatten(1)
        return pooled @ self.proj


def tiny(out: Path, data: Path, card: Path | None, **kw) -> TrainConfig:
    """A TrainConfig that runs in well under a second per step on a CPU: 5 frames of 16x16."""
    from vidtok_cli.train.config import TrainConfig

    base = dict(
        out=str(out), data=str(data), config=str(card) if card else None, size=16, frames=5, fps=None,
        steps=4, batch_size=1, lr=2e-3, warmup=0, perceptual_weight=0.0, disc_start=10_000, disc_layers=2,
        workers=0, log_every=1, save_every=1000, val_every=1000, quiet=True, ema=0.99,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def tiny_vidtwin_config(**overrides: Any) -> Any:
    """A VidTwinConfig small enough for CLI tests: clips of 4 frames of 32x32, hidden 32, one block."""
    from vidtok_cli.arch.vidtwin_config import VidTwinConfig

    base = dict(
        input_size=(4, 32, 32), patch_size=(1, 16, 16), hidden_size=32, depth=1, num_heads=2,
        num_query_tokens=4, query_hidden_size=16, qformer_num_hidden_layers=1, qformer_num_attention_heads=2,
        qformer_intermediate_size=32, init_ch=8, expect_ch=4, d_dim=4,
    )  # fmt: skip
    base.update(overrides)
    return VidTwinConfig(**base)


def tiny_vidtwin(out: Path, seed: int = 0, **overrides: Any) -> Path:
    """A self-describing ``.safetensors`` of a randomly initialised `tiny_vidtwin_config` model at ``out``
    (``vidtok encode --model OUT`` works with it)."""
    from vidtok_cli.arch.vidtwin import build_model
    from vidtok_cli.loading import convert_checkpoint

    torch.manual_seed(seed)
    cfg = tiny_vidtwin_config(**overrides)
    model = build_model(cfg)
    with torch.no_grad():  # the official init zeroes the decoder's output layer: give it weights
        model.decoder.final_layer.linear.weight.normal_(0, 0.05)
    ckpt = out.with_suffix(".ckpt")
    torch.save({"state_dict": model.state_dict()}, ckpt)
    convert_checkpoint(ckpt, out, config=cfg, force=True)
    ckpt.unlink()
    return out


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def step_records(run_dir: Path) -> dict[int, dict]:
    return {r["step"]: r for r in records(run_dir) if "event" not in r}
