"""The VidTok training loop: fine-tuning and training from scratch, one process or many under torchrun.

``train(TrainConfig(...))`` runs a whole training; ``vidtok train`` is a thin wrapper around it.

What one step does (``grad_accum`` micro-batches, then one optimiser step each):

1. A batch of clips (B, 3, T, S, S) in [-1, 1] from ``data.VideoClipDataset`` (PyAV decoding in
   DataLoader workers, per-rank shards, deterministic order and crops).
2. Autoencoder forward (bf16 autocast on CUDA, float32 on CPU): encoder -> posterior sample (KL) or
   FSQ codes -> decoder; ``losses.VidTokLoss.generator_loss``; backward.
3. From ``disc_start`` on, the discriminator loss on (x, detached reconstruction); backward.
4. Gradient clipping (``clip_grad``, official 20), AdamW steps with linear warm-up then cosine decay,
   EMA update of the weights.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised from the
environment (NCCL on GPU, gloo on CPU); the autoencoder and the discriminator are wrapped in
``DistributedDataParallel``; rank 0 alone logs and writes checkpoints; the end record of ``log.jsonl``
holds a hash of every rank's final weights.

Run directory (``out``): ``log.jsonl``, ``train_config.json``, a checkpoint ``step_000100/`` every
``save_every`` steps and ``final/`` at the end (layout and atomic writing in ``run_dir``);
``load_model(out)`` and ``vidtok encode --model out`` use the newest.

The pieces around the loop: ``config`` (options, lr schedule), ``setup`` (the model a run starts from),
``ema``, ``run_dir``, ``distributed`` (process group, collectives), ``progress`` (terminal display).

Resuming (``resume``) restores everything above and continues the data stream where it stopped; on
CPU the losses are then bit-identical to an uninterrupted run (random numbers are derived from
``(seed, step, rank)``, not from a global stream).

The KL trap: with Adam, even a tiny KL weight moves the encoder's log-variance towards 0 at full speed
(Adam normalises gradient size), and a latent drowned in unit noise teaches the decoder to ignore it.
Defaults for a KL model trained from scratch: the log-variance output starts at
``posterior_logvar_init`` (-6: noise std 0.05) and the KL weight ramps up over ``kl_warmup`` steps;
``mean_steps`` (train on the posterior mean first) and ``posterior_logvar_max`` (clamp) are there too.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import checkpoints, families, runtime
from .._version import __version__
from ..errors import CheckpointError
from ..tokenizer import state_dict_sha256
from . import data as datamod
from . import distributed, run_dir, setup
from .config import TrainConfig, lr_factor
from .ema import EMA
from .losses import VidTokLoss
from .progress import Progress, val_text
from .run_log import RunLog

__all__ = ["Trainer", "cuda_training_math", "resume_config", "train"]

_SUMMARY_KEYS = (
    "loss",
    "l1",
    "rec_loss",
    "p_loss",
    "kl",
    "aux_loss",
    "g_loss",
    "disc_loss",
    "lr",
    "grad_norm",
)


def _kl(moments: Tensor) -> Tensor:
    mean, logvar = moments.float().chunk(2, dim=1)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.sum() / kl.shape[0]


class Trainer:
    """One training run (see the module doc). ``Trainer(cfg).run()`` returns a summary dict.

    ``perceptual``: a perceptual-loss callable ``(x, y) -> (N,)`` on frames in [-1, 1] to use instead of
    loading the bench's VGG LPIPS (tests inject a small one).
    """

    def __init__(self, cfg: TrainConfig, perceptual: Callable[[Tensor, Tensor], Tensor] | None = None):
        cfg.validate()
        self._setup_device(cfg)
        files = self._setup_run_dir(cfg)
        src = self._setup_model(cfg)
        resume_state = src.state if self.resume_dir is not None else None
        init_state = src.state if self.resume_dir is None else None
        self._setup_loss(perceptual, init_state)
        self._setup_ddp()
        self._setup_optimisers()
        self._setup_data(files)
        self.step = 0
        self.skipped: dict[str, str] = {}
        self.seen_clips = 0
        if resume_state is not None:
            self._restore(resume_state)
        self.sampler.start_at(self.step * self.cfg.grad_accum * self.cfg.batch_size)
        self.log = RunLog()

    # ------------------------------------------------------------------ setup steps
    def _setup_device(self, cfg: TrainConfig) -> None:
        """Device, process group and autocast precision."""
        self.device = runtime.resolve_device(cfg.device)
        self.dist = distributed.init_distributed(self.device.type)
        if self.dist.active and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.autocast_dtype = runtime.compute_dtype(cfg.precision, self.device)

    def _setup_run_dir(self, cfg: TrainConfig) -> list[Path]:
        """Where the run lives (checked), the checkpoint resumed and the video lists; returns the training videos."""
        self.resume_dir: Path | None = run_dir.find_checkpoint(cfg.resume) if cfg.resume else None
        self.out = Path(cfg.out or cfg.resume or ".").expanduser()
        if self.resume_dir is None:
            run_dir.check_new_run(self.out, cfg.force, remove=self.dist.main)
            distributed.barrier(self.dist)
        files = datamod.find_videos(cfg.data, cfg.data_root)  # type: ignore[arg-type]
        self.val_files = datamod.find_videos(cfg.val, cfg.data_root) if cfg.val else []
        return files

    def _setup_model(self, cfg: TrainConfig) -> setup.ModelSource:
        """The autoencoder on the device, the resolved options (``self.cfg``) and the card's base name."""
        if self.resume_dir is not None:
            src = setup.model_for_resume(self.resume_dir)
        else:
            src = setup.model_from_options(cfg)
        self.base_name = src.base_name
        self.from_scratch = src.from_scratch
        self.arch: setup.Arch = src.arch
        family = families.for_config(src.arch).name
        self.cfg = cfg = cfg.resolved(src.from_scratch, src.arch.regularizer, family)
        if (
            self.resume_dir is None
            and src.from_scratch
            and src.arch.regularizer == "kl"
            and cfg.posterior_logvar_init is not None
        ):
            setup.init_posterior_logvar(src.model, cfg.posterior_logvar_init)
        setup.check_clip_length(src.arch, cfg.frames, "--frames")
        setup.check_clip_size(src.arch, cfg.size, "--size")
        if cfg.val_frames is not None:
            setup.check_clip_length(src.arch, cfg.val_frames, "--val-frames")
        if cfg.val_size is not None:
            setup.check_clip_size(src.arch, cfg.val_size, "--val-size")
        self.model = setup.prepare_model(src.model, cfg, self.device)
        self.ae = setup.Autoencoder(self.model, 0.0, cfg.learn_logvar).to(self.device)
        if self.resume_dir is None and src.state is not None and "logvar" in src.state:
            with torch.no_grad():
                self.ae.logvar.copy_(src.state["logvar"].reshape(()))
        return src

    def _setup_loss(
        self, perceptual: Callable[[Tensor, Tensor], Tensor] | None, init_state: dict[str, Any] | None
    ) -> None:
        """The loss (with the discriminator of the ``--init`` run when it fits)."""
        cfg = self.cfg
        if cfg.perceptual_weight > 0 and perceptual is None:
            perceptual = setup.load_perceptual(cfg.lpips_weights, self.device)
        self.loss = VidTokLoss(cfg.loss_config(), perceptual, self.arch.in_channels).to(self.device)
        if self.dist.active:
            self.loss.all_reduce_mean = functools.partial(distributed.all_reduce_mean, info=self.dist)
        if init_state is not None and "discriminator" in init_state:
            try:
                self.loss.discriminator.load_state_dict(init_state["discriminator"])
            except RuntimeError:
                self._note("the initial run's discriminator does not fit this one; starting a fresh one")

    def _setup_ddp(self) -> None:
        """DDP wrappers of the autoencoder and the discriminator (the modules themselves in one process)."""
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ae_ddp: nn.Module = DDP(self.ae, device_ids=ids)
            self.disc_ddp: nn.Module = DDP(self.loss.discriminator, device_ids=ids)
        else:
            self.ae_ddp = self.ae
            self.disc_ddp = self.loss.discriminator

    def _setup_optimisers(self) -> None:
        """AdamW for the autoencoder and the discriminator, and the EMA."""
        cfg = self.cfg
        self.ae_params = [p for p in self.ae.parameters() if p.requires_grad]
        self.disc_params = list(self.loss.discriminator.parameters())
        self.opt_g = torch.optim.AdamW(
            self.ae_params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        self.opt_d = torch.optim.AdamW(
            self.disc_params, lr=cfg.disc_lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        self.ema = EMA(self.model, cfg.ema) if cfg.ema > 0 else None

    def _setup_data(self, files: list[Path]) -> None:
        """The training clips and this rank's sampler."""
        cfg = self.cfg
        fps = cfg.fps if cfg.fps else None
        spec = datamod.ClipSpec(
            cfg.frames,
            fps,
            cfg.size,
            random_crop=cfg.crop == "random",
            resize=datamod.parse_resize(cfg.resize),
        )
        self.dataset = datamod.VideoClipDataset(files, spec)
        self.sampler = datamod.ClipSampler(len(files), cfg.seed, self.dist.rank, self.dist.world)
        self._val_cache: list[Tensor] | None = None

    def _note(self, msg: str) -> None:
        cfg = getattr(self, "cfg", None)
        if self.dist.main and not (cfg is not None and cfg.quiet):
            print(f"vidtok train: {msg}", file=sys.stderr)

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("format") != run_dir.STATE_FORMAT:
            raise CheckpointError(f"{self.resume_dir}: unknown training-state format {state.get('format')!r}")
        assert self.resume_dir is not None
        self.step = int(state["step"])
        self.seen_clips = int(state.get("seen_clips", 0))
        self.skipped = dict(state.get("skipped", {}))
        try:
            self.opt_g.load_state_dict(state["optimizer_g"])
            self.opt_d.load_state_dict(state["optimizer_d"])
            self.loss.discriminator.load_state_dict(state["discriminator"])
        except (ValueError, RuntimeError, KeyError) as e:
            raise CheckpointError(
                f"{self.resume_dir}: the saved optimiser/discriminator state does not fit this run "
                f"({str(e).splitlines()[0][:160]}); resume with the same --freeze-*/--disc-* options"
            ) from e
        with torch.no_grad():
            self.ae.logvar.copy_(state["logvar"].reshape(()))
            self.loss.lecam_ema_real.copy_(state["lecam"]["real"])
            self.loss.lecam_ema_fake.copy_(state["lecam"]["fake"])
        ema_file = self.resume_dir / "model_ema.safetensors"
        if self.ema is not None and ema_file.is_file():
            sd, _ = checkpoints.read_state_dict(ema_file)
            self.ema.load(sd, int(state.get("ema_updates", 0)))
        if int(state.get("world_size", 1)) != self.dist.world:
            self._note(
                f"resuming a run of {state.get('world_size')} processes with {self.dist.world}: "
                "the data order differs from an uninterrupted run"
            )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return runtime.autocast(self.device, self.autocast_dtype)

    # ------------------------------------------------------------------ one step
    def _train_step(self, batches: Iterator[dict[str, Any]], step: int) -> tuple[dict[str, Tensor], float]:
        """``grad_accum`` micro-batches, then the optimiser steps; returns (mean loss terms, data wait)."""
        accum = self.cfg.grad_accum
        disc_on = self.loss.disc_active(step)
        terms: dict[str, Tensor] = {}
        wait = 0.0
        for micro in range(accum):
            t0 = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - t0
            for f in batch["failed"]:
                path, _, why = f.partition(": ")
                self._new_skips.setdefault(path, why)
            logs = self._micro_step(batch["video"], step, micro, disc_on)
            for k, v in logs.items():
                v = v.detach().float().to(self.device)
                terms[k] = terms[k] + v / accum if k in terms else v / accum
        self._optimiser_step(terms, disc_on)
        return terms, wait

    def _micro_step(self, video: Tensor, step: int, micro: int, disc_on: bool) -> dict[str, Tensor]:
        """Forward and backward of one micro-batch (generator, then discriminator); returns its loss terms."""
        cfg, arch = self.cfg, self.arch
        accum = cfg.grad_accum
        sample = arch.regularizer == "kl" and step >= cfg.mean_steps
        x = video.to(self.device, non_blocking=True)
        self.seen_clips += x.shape[0] * self.dist.world
        seed = datamod.sample_seed(cfg.seed, 0xA11CE, step, micro, self.dist.rank)
        torch.manual_seed(seed)
        self._noise.manual_seed(seed)
        sync = micro == accum - 1 or not self.dist.active
        self.loss.discriminator.requires_grad_(False)
        with contextlib.nullcontext() if sync else self.ae_ddp.no_sync():  # type: ignore[operator]
            with self._autocast():
                xrec, moments, _ = self.ae_ddp(
                    x, sample, self._noise, cfg.posterior_logvar_max, cfg.freeze_encoder
                )
                if arch.regularizer == "kl":
                    reg = _kl(moments)
                else:  # float32 even under autocast, as official (logits are scaled by 200)
                    with torch.autocast(self.device.type, enabled=False):
                        reg = self.model.regularization.aux_loss(
                            moments.float(), self.loss.entropy_weight_at(step), cfg.commitment_weight
                        )
                loss_g, logs = self.loss.generator_loss(
                    x, xrec, self.ae.logvar, step, arch.regularizer, reg, setup.last_layer(self.model)
                )
            (loss_g / accum).backward()
        self.loss.discriminator.requires_grad_(True)
        if disc_on:
            with contextlib.nullcontext() if sync else self.disc_ddp.no_sync():  # type: ignore[operator]
                with self._autocast():
                    loss_d, dlogs = self.loss.discriminator_loss(x, xrec, step, self.disc_ddp)
                (loss_d / accum).backward()
            logs.update(dlogs)
        if arch.regularizer == "fsq":
            logs["entropy_weight"] = torch.tensor(self.loss.entropy_weight_at(step))
        return logs

    def _optimiser_step(self, terms: dict[str, Tensor], disc_on: bool) -> None:
        """Gradient clipping (norms into ``terms``), AdamW steps, EMA update."""
        max_norm = self.cfg.clip_grad if self.cfg.clip_grad > 0 else float("inf")
        terms["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.ae_params, max_norm).detach().float()
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        if disc_on:
            terms["disc_grad_norm"] = (
                torch.nn.utils.clip_grad_norm_(self.disc_params, max_norm).detach().float()
            )
            self.opt_d.step()
            self.opt_d.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    def _set_lr(self) -> None:
        f = lr_factor(self.step, self.cfg.warmup, self.cfg.steps, self.cfg.min_lr_ratio)
        for g in self.opt_g.param_groups:
            g["lr"] = self.cfg.lr * f
        for g in self.opt_d.param_groups:
            g["lr"] = self.cfg.disc_lr * f

    # ------------------------------------------------------------------ logging
    def _open_logs(self) -> None:
        if self.dist.main:
            self.log.open(
                self.out, self.cfg.to_dict(), self.step, self.resume_dir is not None, self.cfg.tensorboard
            )

    def _write(self, rec: dict[str, Any]) -> None:
        self.log.write(rec)

    def _flush_train_log(
        self, acc: dict[str, list[Tensor]], n_steps: int, elapsed: float, wait: float
    ) -> dict[str, Any]:
        keys = sorted(acc)
        vals = torch.stack([torch.stack(acc[k]).mean() for k in keys]) if keys else torch.zeros(0)
        if self.dist.active and keys:
            vals = distributed.all_reduce_mean(vals.to(self.device), self.dist)
        rec: dict[str, Any] = {"step": self.step}
        rec["lr"] = self.opt_g.param_groups[0]["lr"]
        rec.update({k: float(v) for k, v in zip(keys, vals.tolist(), strict=True)})
        clips = n_steps * self.cfg.batch_size * self.cfg.grad_accum * self.dist.world
        rec["steps_per_s"] = n_steps / elapsed if elapsed > 0 else 0.0
        rec["clips_per_s"] = clips / elapsed if elapsed > 0 else 0.0
        rec["frames_per_s"] = rec["clips_per_s"] * self.cfg.frames
        rec["data_wait"] = wait / elapsed if elapsed > 0 else 0.0
        new = self._gather_skips()
        for path, why in new.items():
            if path not in self.skipped:
                self.skipped[path] = why
                self._write({"event": "skipped", "step": self.step, "path": path, "reason": why})
        rec["skipped_videos"] = len(self.skipped)
        rec["time"] = time.time()
        self._write(rec)
        return rec

    def _gather_skips(self) -> dict[str, str]:
        new, self._new_skips = self._new_skips, {}
        if not self.dist.active:
            return new
        merged: dict[str, str] = {}
        for d in distributed.all_gather_object(new, self.dist):
            merged.update(d)
        return merged

    # ------------------------------------------------------------------ validation
    def _val_clips(self) -> list[Tensor]:
        if self._val_cache is not None:
            return self._val_cache
        cfg = self.cfg
        spec = datamod.ClipSpec(
            cfg.val_frames or cfg.frames,
            cfg.val_fps or None,
            cfg.val_size or cfg.size,
            random_crop=False,
            resize=datamod.parse_resize(cfg.resize) if not cfg.val_size else None,
        )
        clips = []
        for index, seed in datamod.validation_keys(
            len(self.val_files), self.dist.rank, self.dist.world, cfg.val_videos
        ):
            try:
                clips.append(datamod.read_clip(self.val_files[index], spec, random.Random(seed)))
            except Exception as e:  # noqa: BLE001 - a bad validation video is skipped and reported
                self._new_skips.setdefault(str(self.val_files[index]), str(e).splitlines()[0][:300])
        self._val_cache = clips
        return clips

    @torch.no_grad()
    def _eval(self) -> Tensor:
        from ..metrics.psnr import psnr
        from ..metrics.ssim import ssim

        sums = torch.zeros(3, dtype=torch.float64)
        for clip in self._val_clips():
            x = clip[None].to(self.device)
            with self._autocast():
                y = self.ae(x, False, None, None, False)[0]  # the posterior mode's reconstruction
            x01 = (x.float()[0].transpose(0, 1) + 1) / 2  # (T, 3, H, W) in [0, 1]
            y01 = (y.float()[0].transpose(0, 1).clamp(-1, 1) + 1) / 2
            p = psnr(x01, y01)
            try:
                s = ssim(x01, y01, dtype=torch.float32).sum().item()
            except ValueError:  # frames smaller than the SSIM window
                s = float("nan")
            sums += torch.tensor([p.sum().item(), s, p.numel()], dtype=torch.float64)
        return sums

    def _validate(self) -> dict[str, Any] | None:
        if not self.val_files:
            return None
        self.model.eval()
        try:
            sums = [self._eval()]
            if self.ema is not None:
                with self.ema.swapped(self.model):
                    sums.append(self._eval())
        finally:
            self.model.train()
        total = distributed.all_reduce_sum(torch.cat(sums).to(self.device), self.dist).cpu().tolist()
        n = total[2]
        rec: dict[str, Any] = {"event": "val", "step": self.step, "frames": int(n)}
        if n:
            rec.update(psnr=total[0] / n, ssim=total[1] / n)
            if self.ema is not None:
                rec.update(psnr_ema=total[3] / n, ssim_ema=total[4] / n)
        self._write(rec)
        self.last_val = rec
        return rec

    # ------------------------------------------------------------------ checkpoints
    def _save(self, dirname: str) -> Path:
        """Writes the checkpoint ``out/dirname`` (rank 0), then waits for every rank."""
        final = self.out / dirname
        if self.dist.main:
            run_dir.write_atomically(self.out, dirname, self._fill_checkpoint)
            self._write({"event": "checkpoint", "step": self.step, "path": str(final)})
        distributed.barrier(self.dist)
        return final

    def _fill_checkpoint(self, d: Path) -> None:
        """The files of a checkpoint into the (temporary) directory ``d``."""
        name = self.cfg.name or run_dir.card_name(self.base_name, self.out)
        card = run_dir.run_card(self.arch, name, self.base_name, self.from_scratch)
        metrics = self._checkpoint_metrics()
        meta = run_dir.weights_metadata(self.arch, card, metrics, self.out, self.step)
        sd = {k: v.detach() for k, v in self.model.state_dict().items()}
        checkpoints.save_safetensors(sd, d / "model.safetensors", meta)
        if self.ema is not None:
            ema_meta = {**meta, "vidtok.train.ema_decay": str(self.cfg.ema)}
            checkpoints.save_safetensors(
                self.ema.state_dict(self.model), d / "model_ema.safetensors", ema_meta
            )
        (d / "card.toml").write_text(run_dir.card_toml(card, self.arch.to_dict(), metrics))
        torch.save(self._training_state(), d / "state.pt")

    def _checkpoint_metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {"step": float(self.step)}
        val = getattr(self, "last_val", None)
        if val:
            metrics.update(
                {
                    f"val_{k}": float(v)
                    for k, v in val.items()
                    if k in ("psnr", "ssim", "psnr_ema", "ssim_ema")
                }
            )
            metrics["val_step"] = float(val["step"])
        return metrics

    def _training_state(self) -> dict[str, Any]:
        """What ``state.pt`` holds (format ``run_dir.STATE_FORMAT``)."""
        return {
            "format": run_dir.STATE_FORMAT,
            "step": self.step,
            "seen_clips": self.seen_clips,
            "world_size": self.dist.world,
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(),
            "discriminator": {k: v.detach().cpu() for k, v in self.loss.discriminator.state_dict().items()},
            "lecam": {
                "real": self.loss.lecam_ema_real.detach().cpu(),
                "fake": self.loss.lecam_ema_fake.detach().cpu(),
            },
            "logvar": self.ae.logvar.detach().cpu(),
            "ema_updates": self.ema.num_updates if self.ema is not None else 0,
            "skipped": dict(self.skipped),
            "config": self.cfg.to_dict(),
            "arch": self.arch.to_dict(),
            "base_name": self.base_name,
            "from_scratch": self.from_scratch,
            "tool_version": __version__,
        }

    # ------------------------------------------------------------------ the loop
    def _weights_hashes(self) -> list[str]:
        """``state_dict_sha256`` of the weights, then of the EMA weights when there are some."""
        hashes = [state_dict_sha256(self.model)]
        if self.ema is not None:
            with self.ema.swapped(self.model):
                hashes.append(state_dict_sha256(self.model))
        return hashes

    def run(self) -> dict[str, Any]:
        """Trains up to ``steps`` (or ``stop_at``); returns a summary (last losses, validation, speed, paths).

        On CUDA, TF32 and cuDNN autotuning are on during the run and restored to what they were after it.
        """
        with cuda_training_math(self.device):
            return self._run()

    def _run(self) -> dict[str, Any]:
        cfg = self.cfg
        self._noise = torch.Generator(device=self.device)
        self._new_skips: dict[str, str] = {}
        self.last_val: dict[str, Any] | None = None
        loader = self._loader()
        self._open_logs()
        stop = min(cfg.steps, cfg.stop_at) if cfg.stop_at else cfg.steps
        self._write_start()
        progress = Progress(self.dist.main and not cfg.quiet, self.step, cfg.steps)
        batches = iter(loader)
        try:
            with progress:
                last_rec, train_time, train_steps, saved_at = self._loop(batches, progress, stop)
            ckpt = self._save_last(progress, saved_at)
            steps_per_s = train_steps / train_time if train_time > 0 else 0.0
            self._write_end(ckpt, steps_per_s)
        finally:
            del batches
            self.log.close()
            if self.dist.active:
                self._shutdown_distributed()
        return self._summary(ckpt, last_rec, steps_per_s)

    def _loader(self) -> Any:
        from torch.utils.data import DataLoader

        cfg = self.cfg
        return DataLoader(
            self.dataset,  # type: ignore[arg-type]
            batch_size=cfg.batch_size,
            sampler=self.sampler,  # type: ignore[arg-type]
            num_workers=cfg.workers,
            collate_fn=datamod.collate_clips,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if cfg.workers > 0 else None,
        )

    def _write_start(self) -> None:
        cfg = self.cfg
        n_params = sum(p.numel() for p in self.ae_params)
        self._write({
            "event": "resume" if self.resume_dir is not None else "start", "step": self.step,
            "world_size": self.dist.world, "device": str(self.device), "trainable_params": n_params,
            "videos": len(self.dataset), "from": str(self.resume_dir or cfg.init or cfg.model or cfg.config),
            "lr": cfg.lr, "kl_warmup": cfg.kl_warmup, "posterior_logvar_init": cfg.posterior_logvar_init,
            "time": time.time(),
        })  # fmt: skip

    def _loop(
        self, batches: Iterator[dict[str, Any]], progress: Progress, stop: int
    ) -> tuple[dict[str, Any], float, int, int]:
        """Steps until ``stop`` with logging, validation and checkpoints; returns (last training log
        record, seconds spent in steps, steps, step of the last checkpoint or -1)."""
        cfg, total = self.cfg, self.cfg.steps
        acc: dict[str, list[Tensor]] = {}
        n_acc, t_acc, wait_acc = 0, 0.0, 0.0
        train_time, train_steps = 0.0, 0
        last_rec: dict[str, Any] = {}
        saved_at = -1
        while self.step < stop:
            t0 = time.perf_counter()
            self._set_lr()
            terms, wait = self._train_step(batches, self.step)
            self.step += 1
            for k, v in terms.items():
                acc.setdefault(k, []).append(v)
            n_acc += 1
            wait_acc += wait
            if self.device.type == "cuda" and self.step % cfg.log_every == 0:
                torch.cuda.synchronize(self.device)
            dt = time.perf_counter() - t0
            t_acc += dt
            train_time += dt
            train_steps += 1
            if self.step % cfg.log_every == 0 or self.step == stop:
                last_rec = self._flush_train_log(acc, n_acc, t_acc, wait_acc)
                acc, n_acc, t_acc, wait_acc = {}, 0, 0.0, 0.0
            progress.update(self.step, last_rec)
            if self.val_files and self.step % cfg.val_every == 0 and self.step < total:
                progress.note(val_text(self._validate()))
            if self.step % cfg.save_every == 0 and self.step < total:
                self._save(run_dir.step_dir_name(self.step))
                saved_at = self.step
        return last_rec, train_time, train_steps, saved_at

    def _save_last(self, progress: Progress, saved_at: int) -> Path:
        """``final/`` (after a last validation) at the end of the run, else the checkpoint of this step."""
        if self.step >= self.cfg.steps:
            if self.val_files:
                progress.note(val_text(self._validate()))
            return self._save("final")
        if saved_at != self.step:
            return self._save(run_dir.step_dir_name(self.step))
        return self.out / run_dir.step_dir_name(self.step)

    def _write_end(self, ckpt: Path, steps_per_s: float) -> None:
        """The end record, with the hash of every rank's final weights (and EMA weights)."""
        mine = self._weights_hashes()
        ranks = distributed.all_gather_object(mine, self.dist) if self.dist.active else [mine]
        hashes = {"weights_sha256": [h[0] for h in ranks]}
        if self.ema is not None:
            hashes["ema_weights_sha256"] = [h[1] for h in ranks]
        self._write({
            "event": "end", "step": self.step, "checkpoint": str(ckpt), **hashes,
            "steps_per_s": steps_per_s, "skipped_videos": len(self.skipped), "time": time.time(),
        })  # fmt: skip

    def _summary(self, ckpt: Path, last_rec: dict[str, Any], steps_per_s: float) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "out": str(self.out),
            "checkpoint": str(ckpt),
            "step": self.step,
            "steps": self.cfg.steps,
        }
        summary.update({k: last_rec[k] for k in _SUMMARY_KEYS if k in last_rec})
        if self.last_val:
            summary.update({k: v for k, v in self.last_val.items() if k.startswith(("psnr", "ssim"))})
        summary.update(steps_per_s=steps_per_s, world_size=self.dist.world, skipped_videos=len(self.skipped))
        return summary

    def _shutdown_distributed(self) -> None:
        """Releases the DDP wrappers (their reducers hold the process group), then the group if ours."""
        import gc

        self.ae_ddp, self.disc_ddp = self.ae, self.loss.discriminator
        gc.collect()
        distributed.release_group(self.dist)


# ============================================================================ entry points


@contextlib.contextmanager
def cuda_training_math(device: torch.device) -> Iterator[None]:
    """On CUDA: TF32 matmuls/convolutions and cuDNN autotuning on inside the block, the previous settings
    after it (the training policy; inference keeps TF32 off unless asked). Nothing on other devices."""
    if device.type != "cuda":
        yield
        return
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        with runtime.tf32(True):
            yield
    finally:
        torch.backends.cudnn.benchmark = benchmark


def resume_config(run: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
    """The options of the run being resumed (from its newest checkpoint), with ``overrides`` applied.

    ``stop_at`` and ``force`` are not inherited (they belong to one invocation).
    """
    ckpt = run_dir.find_checkpoint(run)
    saved = run_dir.load_state(ckpt / "state.pt").get("config", {})
    cfg = TrainConfig.from_dict(saved)
    cfg.stop_at, cfg.force = None, False  # options of one invocation, not of the run
    for k, v in overrides.items():
        setattr(cfg, k, v)
    cfg.resume = str(run)
    cfg.out = str(overrides.get("out") or run)
    cfg.config = cfg.model = cfg.init = None
    return cfg


def train(cfg: TrainConfig, perceptual: Callable[[Tensor, Tensor], Tensor] | None = None) -> dict[str, Any]:
    """Runs one training (see :class:`Trainer`); returns its summary."""
    return Trainer(cfg, perceptual).run()
