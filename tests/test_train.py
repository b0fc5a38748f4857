"""`vidtok train`: data, losses, the loop (learning, every loss term, resume, freezing), torchrun, CLI."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vidtok_cli.arch import VidTokConfig, build_model
from vidtok_cli.checkpoints import read_state_dict
from vidtok_cli.errors import UsageError, WeightsUnavailableError
from vidtok_cli.metrics.lpips import LPIPS
from vidtok_cli.train import data as datamod
from vidtok_cli.train import losses
from vidtok_cli.train.config import TrainConfig, lr_factor
from vidtok_cli.train.discriminator import build_discriminator
from vidtok_cli.train.run_dir import find_checkpoint
from vidtok_cli.train.setup import enable_gradient_checkpointing
from vidtok_cli.train.trainer import resume_config, train

from .helpers import cli, make_video, records, step_records, tiny, write_video

TINY_CARD = """\
name = "vidtok-tiny"
description = "a tiny test architecture"
[architecture]
ch = 8
ch_mult = [1, 2, 2]
z_channels = 4
regularizer = "{reg}"
fsq_levels = {levels}
"""

TIMING_KEYS = {"time", "steps_per_s", "clips_per_s", "frames_per_s", "data_wait"}


@pytest.fixture(scope="module")
def one_video(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("one")
    write_video(d / "only.mp4", seed=7)
    return d


@pytest.fixture(scope="module")
def kl_card(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cards") / "tiny-kl.toml"
    p.write_text(TINY_CARD.format(reg="kl", levels="[]"))
    return p


@pytest.fixture(scope="module")
def fsq_card(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cards") / "tiny-fsq.toml"
    p.write_text(TINY_CARD.format(reg="fsq", levels="[5, 5, 5, 5]"))
    return p


def random_lpips() -> LPIPS:
    """The bench's LPIPS-VGG module with random weights (no weights offline); linear layers >= 0 as trained ones."""
    torch.manual_seed(0)
    lp = LPIPS()
    for lin in lp.lins:
        lin.weight.data.abs_()
    return lp


# ----------------------------------------------------------------------------- data


def test_find_videos_folder_and_csv(videos, tmp_path):
    files = datamod.find_videos(videos)
    assert [f.name for f in files] == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    csv = tmp_path / "train.csv"
    csv.write_text("videos,caption\nclip1.mp4,a\nclip0.mp4,b\n")
    assert datamod.find_videos(csv, root=videos) == [videos / "clip1.mp4", videos / "clip0.mp4"]
    with pytest.raises(datamod.DataError, match="videos"):
        bad = tmp_path / "bad.csv"
        bad.write_text("path\nx.mp4\n")
        datamod.find_videos(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(datamod.DataError, match="no video files"):
        datamod.find_videos(tmp_path / "empty")


def test_read_clip_shape_range_and_fps(videos):
    import random

    spec = datamod.ClipSpec(frames=5, fps=4.0, size=16, random_crop=False)
    clip = datamod.read_clip(videos / "clip0.mp4", spec, random.Random(0))
    assert clip.shape == (3, 5, 16, 16) and clip.dtype == torch.float32
    assert -1 <= clip.min() and clip.max() <= 1
    # 12 frames at 8 fps resampled to 4 fps -> 6 frames; asking for 9 repeats the last one
    long = datamod.read_clip(videos / "clip0.mp4", datamod.ClipSpec(9, 4.0, 16, False), random.Random(0))
    assert torch.equal(long[:, 6], long[:, 8]) and not torch.equal(long[:, 0], long[:, 5])
    # random crops/starts are a function of the seed
    a = datamod.read_clip(videos / "clip1.mp4", datamod.ClipSpec(5, None, 16, True), random.Random(5))
    b = datamod.read_clip(videos / "clip1.mp4", datamod.ClipSpec(5, None, 16, True), random.Random(5))
    assert torch.equal(a, b)


def test_sampler_shards_and_resumes():
    full = datamod.ClipSampler(7, seed=3)
    it = iter(full)
    first = [next(it) for _ in range(20)]
    assert sorted(k[0] for k in first[:7]) == list(range(7))  # an epoch visits every video once
    later = datamod.ClipSampler(7, seed=3)
    later.start_at(9)
    it2 = iter(later)
    assert [next(it2) for _ in range(11)] == first[9:]
    r0, r1 = datamod.ClipSampler(7, 3, 0, 2), datamod.ClipSampler(7, 3, 1, 2)
    i0, i1 = iter(r0), iter(r1)
    s0 = {next(i0)[0] for _ in range(4)}
    s1 = {next(i1)[0] for _ in range(4)}
    assert s0 | s1 == set(range(7))


# ----------------------------------------------------------------------------- losses


def test_gan_loss_functions():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert losses.hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.75))
    sp = torch.nn.functional.softplus
    want = 0.5 * (sp(-real).mean() + sp(fake).mean())
    assert losses.vanilla_d_loss(real, fake).item() == pytest.approx(want.item())
    logits = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    assert losses.non_saturating_g_loss(logits).item() == pytest.approx(
        ((sp(torch.tensor(-2.0)) + math.log(2)) / 2).item()
    )
    reg = losses.lecam_reg(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor(0.5), torch.tensor(0.2))
    assert reg.item() == pytest.approx(0.8**2 + 0.5**2)
    assert losses.entropy_weight_at(0, 0.1, 2000, 3.0) == pytest.approx(0.3)
    assert losses.entropy_weight_at(1000, 0.1, 2000, 3.0) == pytest.approx(0.2)
    assert losses.entropy_weight_at(5000, 0.1, 2000, 3.0) == pytest.approx(0.1)


def test_discriminators_official_layout():
    d2, d3 = build_discriminator("2d"), build_discriminator("3d")
    assert d2(torch.randn(2, 3, 32, 32)).shape == (2, 1, 2, 2)
    assert d3(torch.randn(1, 3, 9, 32, 32)).ndim == 5
    keys = set(d2.state_dict())
    assert {"main.0.weight", "main.0.bias", "main.2.weight", "main.3.running_mean", "main.11.bias"} <= keys
    assert "main.2.bias" not in keys  # convs before BatchNorm have no bias, as official


def test_lr_schedule_and_kl_schedule():
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)
    loss = losses.VidTokLoss(
        losses.LossConfig(perceptual_weight=0, kl_weight=1e-6, kl_warmup=100, kl_start=10)
    )
    assert [loss.kl_weight_at(s) for s in (0, 9, 10, 60, 110, 500)] == pytest.approx(
        [0, 0, 0, 5e-7, 1e-6, 1e-6]
    )


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    m = build_model(VidTokConfig(ch=8, ch_mult=(1, 2, 2), z_channels=4))
    for p in m.parameters():
        p.data.add_(0.01 * torch.randn_like(p))  # leave the zero-initialised blocks
    x = torch.randn(1, 3, 5, 16, 16)

    def grads(model):
        model.zero_grad()
        model.decode(model.encode(x).latent).square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads(m)
    assert enable_gradient_checkpointing(m) > 10
    for a, b in zip(plain, grads(m), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- the loop


def test_tiny_model_learns(one_video, kl_card, tmp_path):
    out = tmp_path / "run"
    summary = train(tiny(out, one_video, kl_card, steps=30, lr=3e-3, warmup=3, ema=0, crop="center"))
    recs = step_records(out)
    assert sorted(recs) == list(range(1, 31))
    first = np.mean([recs[s]["rec_loss"] for s in range(1, 6)])
    last = np.mean([recs[s]["rec_loss"] for s in range(26, 31)])
    assert last < 0.6 * first, (first, last)
    assert summary["step"] == 30 and (out / "final" / "model.safetensors").is_file()
    # the KL defaults for training from scratch
    assert recs[1]["kl_weight"] == 0.0 and 0 < recs[30]["kl_weight"] < 1e-6
    start = records(out)[0]
    assert start["posterior_logvar_init"] == -6.0 and start["kl_warmup"] == 2000


def test_every_loss_term_with_discriminator(videos, kl_card, fsq_card, tmp_path):
    kl_out = tmp_path / "kl"
    train(
        tiny(kl_out, videos, kl_card, steps=3, disc_start=1, perceptual_weight=0.5, lecam_weight=0.01),
        perceptual=random_lpips(),
    )
    recs = step_records(kl_out)
    assert "g_loss" not in recs[1] and "disc_loss" not in recs[1]  # the GAN starts at step index 1
    want = {"loss", "l1", "p_loss", "rec_loss", "nll", "logvar", "kl", "kl_weight", "g_loss", "d_weight",
            "disc_loss", "d_loss", "logits_real", "logits_fake", "lecam", "grad_norm", "disc_grad_norm", "lr"}  # fmt: skip
    for s in (2, 3):
        assert want <= set(recs[s]), want - set(recs[s])
        assert all(math.isfinite(recs[s][k]) for k in want)
        assert recs[s]["p_loss"] > 0 and recs[s]["d_weight"] > 0 and recs[s]["disc_loss"] > 0
    assert recs[3]["logvar"] != 0.0  # the output log-variance is learned

    fsq_out = tmp_path / "fsq"
    train(
        tiny(
            fsq_out,
            videos,
            fsq_card,
            steps=2,
            disc_start=0,
            disc_dim="3d",
            disc_loss="vanilla",
            gen_loss="hinge",
        )
    )
    recs = step_records(fsq_out)
    assert {"aux_loss", "entropy_weight", "g_loss", "disc_loss", "lecam"} <= set(recs[1])
    assert recs[1]["entropy_weight"] == pytest.approx(0.3)
    assert all(math.isfinite(v) for v in recs[2].values())


def test_resume_gives_the_same_losses(videos, kl_card, tmp_path):
    kw = dict(steps=6, save_every=3, disc_start=2, lecam_weight=0.01, warmup=2)
    straight = tmp_path / "straight"
    train(tiny(straight, videos, kl_card, **kw))
    split = tmp_path / "split"
    train(tiny(split, videos, kl_card, stop_at=3, **kw))
    assert (split / "step_000003" / "state.pt").is_file() and not (split / "final").exists()
    state = torch.load(split / "step_000003" / "state.pt", weights_only=True)  # no unsafe unpickling
    assert state["step"] == 3
    train(resume_config(split))
    a, b = step_records(straight), step_records(split)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for s in a:
        assert {k: v for k, v in a[s].items() if k not in TIMING_KEYS} == {
            k: v for k, v in b[s].items() if k not in TIMING_KEYS
        }, s
    for name in ("model.safetensors", "model_ema.safetensors"):
        wa, _ = read_state_dict(straight / "final" / name)
        wb, _ = read_state_dict(split / "final" / name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["event"] for r in records(split) if "event" in r][:3] == ["start", "checkpoint", "resume"]


def test_freeze_encoder_keeps_encoder_bit_identical(videos, kl_card, tmp_path):
    stage1 = tmp_path / "s1"
    train(tiny(stage1, videos, kl_card, steps=2, disc_start=0))
    stage2 = tmp_path / "s2"
    train(tiny(stage2, videos, None, init=str(stage1), steps=3, freeze_encoder=True, disc_start=0, size=24))
    before, _ = read_state_dict(stage1 / "final" / "model.safetensors")
    after, _ = read_state_dict(stage2 / "final" / "model.safetensors")
    ema, _ = read_state_dict(stage2 / "final" / "model_ema.safetensors")
    enc = [k for k in before if k.startswith("encoder.")]
    assert enc and all(torch.equal(before[k], after[k]) and torch.equal(before[k], ema[k]) for k in enc)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    # stage 2 started from stage 1's discriminator and output log-variance
    s1 = torch.load(stage1 / "final" / "state.pt", weights_only=True)
    assert step_records(stage2)[1]["logvar"] == pytest.approx(float(s1["logvar"]))


def test_unreadable_videos_are_skipped_and_counted(videos, kl_card, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.mp4").write_bytes((videos / "clip0.mp4").read_bytes())
    (data / "broken.mp4").write_bytes(b"this is not a video")
    out = tmp_path / "run"
    summary = train(tiny(out, data, kl_card, steps=4))
    assert summary["skipped_videos"] == 1
    skipped = [r for r in records(out) if r.get("event") == "skipped"]
    assert len(skipped) == 1 and skipped[0]["path"].endswith("broken.mp4")
    assert step_records(out)[4]["skipped_videos"] == 1
    (data / "good.mp4").unlink()
    with pytest.raises(datamod.DataError, match="could not be read"):
        train(tiny(tmp_path / "run2", data, kl_card, steps=1))


def test_options_are_checked(videos, kl_card, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="1 \\+ k"):
        train(tiny(tmp_path / "a", videos, kl_card, frames=6))
    with pytest.raises(UsageError, match="say what to train"):
        train(tiny(tmp_path / "b", videos, None))
    train(tiny(tmp_path / "c", videos, kl_card, steps=1))
    with pytest.raises(UsageError, match="--resume"):
        train(tiny(tmp_path / "c", videos, kl_card, steps=1))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="--perceptual-weight 0"):
        train(tiny(tmp_path / "d", videos, kl_card, perceptual_weight=1.0, lpips_weights=str(tmp_path)))


# ----------------------------------------------------------------------------- the command and global state


def test_train_help_lists_every_option_of_the_config():
    import dataclasses

    from typer.testing import CliRunner

    from vidtok_cli.cli.app import load_commands
    from vidtok_cli.train.config import cli_fields, flags

    res = CliRunner().invoke(load_commands(), ["train", "--help"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for f in cli_fields():
        for name in (n for flag in flags(f) for n in flag.split("/")):
            assert f" {name} " in text, name
        assert f.metadata["help"][:40] in text, f.name
    assert " --json " in text
    assert {f.name for f in dataclasses.fields(TrainConfig)} - {f.name for f in cli_fields()} == {"betas"}


@pytest.fixture
def tf32_flags():
    """A non-default setting of the global TF32 / cuDNN flags for the test, the previous one after it."""
    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (cuda.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
    cuda.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = True, False, False
    yield lambda: (cuda.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
    cuda.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = saved


def test_training_leaves_the_global_tf32_flags_alone(tf32_flags, videos, kl_card, tmp_path, monkeypatch):
    import importlib

    import vidtok_cli.train
    from vidtok_cli.train.trainer import Trainer, cuda_training_math

    monkeypatch.setattr(vidtok_cli.train, "config", vidtok_cli.train.config)  # restored after the re-import
    monkeypatch.delitem(sys.modules, "vidtok_cli.train.config")
    importlib.import_module("vidtok_cli.train.config")
    assert tf32_flags() == (True, False, False)
    trainer = Trainer(tiny(tmp_path / "run", videos, kl_card, steps=1))
    assert tf32_flags() == (True, False, False)
    trainer.run()
    assert tf32_flags() == (True, False, False)
    with cuda_training_math(torch.device("cuda")):  # the policy on CUDA: on inside, restored after
        assert tf32_flags() == (True, True, True)
    assert tf32_flags() == (True, False, False)


def test_end_record_hashes_the_weights_in_memory(videos, kl_card, tmp_path):
    from vidtok_cli.loading import load_model
    from vidtok_cli.tokenizer import state_dict_sha256

    out = tmp_path / "run"
    train(tiny(out, videos, kl_card, steps=1))
    end = [r for r in records(out) if r.get("event") == "end"][0]
    tok = load_model(out / "final" / "model.safetensors")
    ema = load_model(out / "final" / "model_ema.safetensors", config=tok.cfg)
    assert end["weights_sha256"] == [state_dict_sha256(tok.module)]
    assert end["ema_weights_sha256"] == [state_dict_sha256(ema.module)]


# ----------------------------------------------------------------------------- processes


@pytest.mark.slow  # two processes, each importing torch
def test_torchrun_two_processes_end_with_identical_weights(videos, kl_card, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "vidtok_cli", "train", "--config", str(kl_card), "--data", str(videos), "--out", str(out),
        "--size", "16", "--frames", "5", "--fps", "0", "--steps", "3", "--batch-size", "1", "--lr", "2e-3",
        "--warmup", "0", "--perceptual-weight", "0", "--disc-start", "1", "--disc-layers", "2",
        "--workers", "0", "--log-every", "1", "--device", "cpu", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    end = [r for r in records(out) if r.get("event") == "end"][0]
    assert len(end["weights_sha256"]) == 2 and len(set(end["weights_sha256"])) == 1
    assert records(out)[0]["world_size"] == 2
    assert {"g_loss", "disc_loss"} <= set(step_records(out)[3])


def test_cli_run_directory_is_usable_by_encode(videos, kl_card, tmp_path):
    out = tmp_path / "s1"
    proc = cli(
        "train", "--config", str(kl_card), "--data", str(videos), "--val", str(videos), "--out", str(out),
        "--size", "16", "--frames", "5", "--fps", "0", "--val-fps", "0", "--steps", "2", "--batch-size", "1",
        "--perceptual-weight", "0", "--workers", "1", "--val-every", "1", "--save-every", "1", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["step"] == 2 and math.isfinite(summary["psnr"]) and math.isfinite(summary["ssim_ema"])
    assert sorted(p.name for p in out.iterdir()) == ["final", "log.jsonl", "step_000001", "train_config.json"]
    assert sorted(p.name for p in (out / "final").iterdir()) == [
        "card.toml", "model.safetensors", "model_ema.safetensors", "state.pt"
    ]  # fmt: skip
    assert find_checkpoint(out) == out / "final"
    from vidtok_cli import zoo

    card = zoo.card_from_toml(out / "final" / "card.toml")
    assert card.config.ch == 8 and card.name == "vidtok-tiny-s1" and card.metrics["step"] == 2
    for ref in (out, out / "final"):
        vt = tmp_path / f"{ref.name}.vtok"
        enc = cli("encode", str(videos / "clip0.mp4"), "-o", str(vt), "--model", str(ref), "--json")
        assert enc.returncode == 0, enc.stderr
        assert json.loads(enc.stdout)["frames"] == 12
    # resuming a finished run with more steps continues from final/
    proc = cli("train", "--resume", str(out), "--steps", "3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert step_records(out)[3]["lr"] > 0 and [
        r["step"] for r in records(out) if r.get("event") == "end"
    ] == [3]


def test_resize_range_draws_the_short_side_per_clip():
    from vidtok_cli.train.data import ClipSpec, parse_resize

    assert parse_resize(None) is None and parse_resize("256") == (256, 256)
    assert parse_resize("128-320") == (128, 320) == parse_resize("128:320")
    for bad in ("x", "320-128", "4", "1-2-3"):
        with pytest.raises(UsageError):
            parse_resize(bad)
    with pytest.raises(UsageError):
        ClipSpec(9, None, 64, resize=(32, 128))  # the crop must fit
    rng = random.Random(0)
    spec = ClipSpec(9, None, 64, random_crop=True, resize=(128, 320))
    sides = {spec.short_side(rng) for _ in range(200)}
    assert min(sides) >= 128 and max(sides) <= 320 and len(sides) > 50
    assert ClipSpec(9, None, 64, random_crop=False, resize=(128, 320)).short_side(rng) == 224
    assert ClipSpec(9, None, 64).short_side(rng) == 64


def test_resized_clips_are_crops_of_a_larger_frame(tmp_path):
    from vidtok_cli.train.data import ClipSpec, read_clip

    src = tmp_path / "v.mp4"
    make_video(src, n=9, w=96, h=64)
    full = read_clip(src, ClipSpec(9, None, 32, random_crop=False), random.Random(0))
    zoomed = read_clip(src, ClipSpec(9, None, 32, random_crop=False, resize=(64, 64)), random.Random(0))
    assert full.shape == zoomed.shape == (3, 9, 32, 32)
    assert not torch.allclose(full, zoomed)  # a 32-pixel window of a 64-pixel frame, not the whole frame
