"""The ``vidtok train`` command: train or fine-tune a tokenizer."""

from __future__ import annotations

import os

import typer

from .app import app
from .console import print_summary


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    data: str | None = typer.Option(
        None, "--data", help="Folder of videos (recursive) or CSV with a 'videos' column."
    ),
    out: str | None = typer.Option(None, "--out", "-o", help="Run directory (checkpoints, log.jsonl)."),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Architecture to train from scratch: card TOML, official YAML or zoo name.",
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Fine-tune these weights: zoo name, weights file or run directory."
    ),
    init: str | None = typer.Option(
        None,
        "--init",
        help="Start from a run directory (weights, discriminator, log-variance), e.g. stage 2; or 'trivial' (with --config): weights that compute the trivial codec, a warm start for small models.",
    ),
    resume: str | None = typer.Option(None, "--resume", help="Continue an interrupted run directory."),
    val: str | None = typer.Option(None, "--val", help="Validation videos (folder or CSV): PSNR/SSIM."),
    data_root: str | None = typer.Option(None, "--data-root", help="Folder the CSV paths are relative to."),
    name: str | None = typer.Option(None, "--name", help="Model card name of the result."),
    size: int = typer.Option(256, "--size", help="Clip side: short side resized, then a square crop."),
    resize: str | None = typer.Option(
        None, "--resize", help="Short side before cropping: N, or MIN-MAX drawn per clip (default --size)."
    ),
    frames: int = typer.Option(17, "--frames", help="Frames per clip (1 + 4k for causal 4x models)."),
    fps: float = typer.Option(3.0, "--fps", help="Sampling frame rate of training clips (0: every frame)."),
    val_fps: float = typer.Option(
        8.0, "--val-fps", help="Sampling frame rate of validation clips (0: every frame)."
    ),
    val_size: int | None = typer.Option(None, "--val-size", help="Validation clip side (default --size)."),
    val_frames: int | None = typer.Option(
        None, "--val-frames", help="Validation clip length (default --frames)."
    ),
    val_videos: int = typer.Option(16, "--val-videos", help="Validation videos used (one clip each)."),
    crop: str = typer.Option("random", "--crop", help="random or center crop of training clips."),
    steps: int = typer.Option(50000, "--steps", help="Optimiser steps in total."),
    batch_size: int = typer.Option(2, "--batch-size", "-b", help="Clips per step and process."),
    lr: float | None = typer.Option(
        None, "--lr", help="Peak learning rate (default 1e-4 from scratch, 1e-5 fine-tuning)."
    ),
    disc_lr: float | None = typer.Option(
        None, "--disc-lr", help="Discriminator learning rate (default --lr)."
    ),
    weight_decay: float = typer.Option(0.0, "--weight-decay", help="AdamW weight decay."),
    warmup: int | None = typer.Option(
        None,
        "--warmup",
        help="Linear learning-rate warm-up steps, then cosine decay (default min(1000, steps/10)).",
    ),
    min_lr_ratio: float = typer.Option(0.1, "--min-lr-ratio", help="Final learning rate / peak."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per optimiser step."),
    clip_grad: float = typer.Option(20.0, "--clip-grad", help="Gradient-norm clipping (0: off)."),
    ema: float = typer.Option(0.999, "--ema", help="EMA decay of the weights (0: off)."),
    perceptual_weight: float = typer.Option(1.0, "--perceptual-weight", help="LPIPS weight (0: no LPIPS)."),
    lpips_weights: str | None = typer.Option(
        None, "--lpips-weights", help="Folder with the LPIPS VGG16 weights."
    ),
    disc_start: int = typer.Option(10000, "--disc-start", help="Step at which the GAN loss starts."),
    disc_weight: float = typer.Option(0.2, "--disc-weight", help="GAN weight (times the adaptive weight)."),
    disc_loss: str = typer.Option("hinge", "--disc-loss", help="Discriminator loss: hinge or vanilla."),
    gen_loss: str = typer.Option(
        "non-saturating", "--gen-loss", help="Generator GAN loss: non-saturating or hinge."
    ),
    disc_dim: str = typer.Option("2d", "--disc-dim", help="PatchGAN on frames (2d) or clips (3d)."),
    disc_layers: int = typer.Option(3, "--disc-layers", help="PatchGAN depth."),
    lecam_weight: float = typer.Option(0.005, "--lecam-weight", help="LeCam regularisation weight."),
    learn_logvar: bool = typer.Option(
        True, "--learn-logvar/--fixed-logvar", help="Learn the output log-variance."
    ),
    kl_weight: float = typer.Option(1e-6, "--kl-weight", help="KL weight (KL models)."),
    kl_warmup: int | None = typer.Option(
        None, "--kl-warmup", help="KL warm-up steps (default 2000 from scratch)."
    ),
    posterior_logvar_init: float | None = typer.Option(
        None, "--posterior-logvar-init", help="Initial encoder log-variance (default -6 for KL from scratch)."
    ),
    posterior_logvar_max: float | None = typer.Option(
        None, "--posterior-logvar-max", help="Clamp the encoder log-variance to at most this in training."
    ),
    mean_steps: int = typer.Option(
        0, "--mean-steps", help="Decode the posterior mean (no sampling, no KL) first."
    ),
    entropy_weight: float = typer.Option(0.1, "--entropy-weight", help="FSQ entropy weight."),
    entropy_annealing_steps: int = typer.Option(
        2000, "--entropy-annealing-steps", help="FSQ entropy annealing."
    ),
    entropy_annealing_factor: float = typer.Option(
        3.0, "--entropy-annealing-factor", help="Initial entropy factor."
    ),
    commitment_weight: float = typer.Option(0.25, "--commitment-weight", help="FSQ commitment weight."),
    freeze_encoder: bool = typer.Option(
        False, "--freeze-encoder", help="Train the decoder only (tokens unchanged)."
    ),
    freeze_decoder: bool = typer.Option(False, "--freeze-decoder", help="Train the encoder only."),
    grad_checkpointing: bool = typer.Option(
        False, "--grad-checkpointing", help="Recompute activations (less memory)."
    ),
    save_every: int = typer.Option(5000, "--save-every", help="Checkpoint every N steps."),
    val_every: int = typer.Option(2000, "--val-every", help="Validate every N steps."),
    log_every: int = typer.Option(10, "--log-every", help="Log every N steps."),
    stop_at: int | None = typer.Option(
        None, "--stop-at", help="Stop (with a checkpoint) at this step; resume later."
    ),
    workers: int = typer.Option(4, "--workers", help="DataLoader worker processes per training process."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda ..."),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16."
    ),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write TensorBoard logs."),
    force: bool = typer.Option(
        False, "--force", "-f", help="Start over in a run directory that holds a run."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output or summary."),
) -> None:
    """Train or fine-tune a VidTok tokenizer (one process, or many under torchrun)."""
    from ..train.config import TrainConfig
    from ..train.trainer import resume_config, train

    options = {k: v for k, v in ctx.params.items() if k != "as_json"}
    options["fps"] = fps or None
    options["val_fps"] = val_fps or None
    options["quiet"] = quiet or as_json  # --json: stdout holds the summary only
    if resume:
        # options given now override the run's own; the others keep the values the run was started with
        given = {
            k: v
            for k, v in options.items()
            if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"
        }
        if as_json:
            given["quiet"] = True
        cfg = resume_config(resume, **given)
    else:
        cfg = TrainConfig(**options)
    summary = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        print_summary(summary, as_json, quiet, "training finished")
