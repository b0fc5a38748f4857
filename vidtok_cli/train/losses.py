"""The VidTok training loss (official ``GeneralLPIPSWithDiscriminator`` semantics, own implementation).

Generator (autoencoder) objective for a batch x (B, C, T, H, W) and its reconstruction y:

* per pixel ``r = |x - y| + perceptual_weight * LPIPS(x_f, y_f)`` (LPIPS per frame, broadcast over the
  frame's pixels), ``nll = sum(r / exp(logvar) + logvar) / (B * T)`` -- a sum over C, H, W averaged over
  frames, with ``logvar`` a learned scalar (the output log-variance, init 0);
* GAN term (from ``disc_start`` on): ``d_weight * g_loss`` with the non-saturating generator loss
  (softplus of minus the per-sample mean logit; official ``gen_loss_cross_entropy: true``) or the
  hinge/vanilla one (minus the mean logit), and the adaptive weight
  ``d_weight = disc_weight * clamp(|grad nll| / (|grad g_loss| + 1e-4), 0, 1e4)`` on the decoder's last
  layer (VQGAN);
* regulariser: ``kl_weight * KL`` (sum over the latent, mean over the batch) for KL models, or the FSQ
  ``entropy_weight(step) * entropy + commitment_weight * commitment`` with the entropy weight annealed
  linearly from ``annealing_factor * entropy_weight`` to ``entropy_weight`` over ``annealing_steps``.

Discriminator objective: hinge ``0.5 * (mean relu(1 - real) + mean relu(1 + fake))`` or vanilla
``0.5 * (mean softplus(-real) + mean softplus(fake))``, plus ``lecam_weight`` times the LeCam
regulariser ``mean relu(real - ema_fake)^2 + mean relu(ema_real - fake)^2`` (EMAs of the mean logits,
decay 0.999, updated before use).

Official defaults (configs/*.yaml): perceptual 1.0, disc 2-D, disc_weight 0.2, learned logvar,
non-saturating generator loss, hinge discriminator loss, LeCam 0.005, KL 1e-6, FSQ entropy 0.1 annealed
from 3x over 2000 steps, commitment 0.25. Steps here are training steps; the official ``disc_start: 20001``
counts Lightning optimizer steps, two per training step (so about training step 10000).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .discriminator import build_discriminator

__all__ = [
    "LossConfig",
    "VidTokLoss",
    "adaptive_weight",
    "entropy_weight_at",
    "hinge_d_loss",
    "hinge_g_loss",
    "lecam_reg",
    "non_saturating_g_loss",
    "vanilla_d_loss",
]


@dataclass(frozen=True)
class LossConfig:
    """Weights and switches of :class:`VidTokLoss` (defaults = the official configs)."""

    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0
    disc_start: int = 10000
    disc_weight: float = 0.2
    disc_factor: float = 1.0
    disc_dim: str = "2d"
    disc_layers: int = 3
    disc_channels: int = 64
    disc_loss: str = "hinge"
    gen_loss: str = "non-saturating"
    lecam_weight: float = 0.005
    lecam_decay: float = 0.999
    kl_weight: float = 1e-6
    kl_warmup: int = 0
    kl_start: int = 0
    entropy_weight: float = 0.1
    entropy_annealing_steps: int = 2000
    entropy_annealing_factor: float = 3.0
    commitment_weight: float = 0.25
    diversity_gamma: float = 1.0

    def __post_init__(self) -> None:
        if self.disc_dim not in ("2d", "3d"):
            raise ValueError(f"disc_dim must be '2d' or '3d', got {self.disc_dim!r}")
        if self.disc_loss not in ("hinge", "vanilla"):
            raise ValueError(f"disc_loss must be 'hinge' or 'vanilla', got {self.disc_loss!r}")
        if self.gen_loss not in ("non-saturating", "hinge"):
            raise ValueError(f"gen_loss must be 'non-saturating' or 'hinge', got {self.gen_loss!r}")


# ----------------------------------------------------------------------------- GAN pieces


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Hinge discriminator loss."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Non-saturating (logistic) discriminator loss."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def non_saturating_g_loss(logits_fake: Tensor) -> Tensor:
    """Official generator cross-entropy: mean logit per sample, then ``-log sigmoid`` of it, batch mean."""
    per_sample = logits_fake.reshape(logits_fake.shape[0], -1).mean(dim=1)
    return F.softplus(-per_sample).mean()


def hinge_g_loss(logits_fake: Tensor) -> Tensor:
    """Generator loss of hinge GANs: minus the mean logit."""
    return -logits_fake.mean()


def lecam_reg(logits_real: Tensor, logits_fake: Tensor, ema_real: Tensor, ema_fake: Tensor) -> Tensor:
    """LeCam regulariser (Tseng et al. 2021) against EMAs of the mean logits."""
    return F.relu(logits_real - ema_fake).pow(2).mean() + F.relu(ema_real - logits_fake).pow(2).mean()


def adaptive_weight(nll: Tensor, g_loss: Tensor, last_layer: Tensor, disc_weight: float) -> Tensor:
    """VQGAN adaptive GAN weight: ratio of the gradient norms at the decoder's last layer, times ``disc_weight``."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    w = nll_grad.float().norm() / (g_grad.float().norm() + 1e-4)
    return w.clamp(0.0, 1e4).detach() * disc_weight


def entropy_weight_at(step: int, weight: float, annealing_steps: int, factor: float) -> float:
    """FSQ entropy weight at ``step``: linear from ``factor * weight`` down to ``weight`` over ``annealing_steps``."""
    if step >= annealing_steps or annealing_steps <= 0:
        return weight
    start = factor * weight
    return start - (step / annealing_steps) * (start - weight)


def _frames(x: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W)."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


# ----------------------------------------------------------------------------- the loss


class VidTokLoss(nn.Module):
    """Generator and discriminator objectives of VidTok training (see the module doc).

    ``perceptual``: a callable ``(x, y) -> (N,)`` on frames in [-1, 1] (the bench's VGG LPIPS), or None
    when ``perceptual_weight`` is 0. It is kept out of ``state_dict`` (its weights are not trained).
    ``all_reduce_mean``: averages a tensor over data-parallel ranks (identity by default), so the LeCam
    EMAs stay identical on every rank.
    """

    def __init__(
        self,
        cfg: LossConfig,
        perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
        in_channels: int = 3,
    ):
        super().__init__()
        if cfg.perceptual_weight > 0 and perceptual is None:
            raise ValueError("a perceptual loss module is needed when perceptual_weight > 0")
        self.cfg = cfg
        object.__setattr__(self, "perceptual", perceptual)  # not a registered submodule
        self.discriminator = build_discriminator(
            cfg.disc_dim, in_channels, cfg.disc_channels, cfg.disc_layers
        )
        self.register_buffer("lecam_ema_real", torch.zeros(()))
        self.register_buffer("lecam_ema_fake", torch.zeros(()))
        self.all_reduce_mean: Callable[[Tensor], Tensor] = lambda t: t

    # -------------------------------------------------------------- schedules
    def disc_active(self, step: int) -> bool:
        """Whether the GAN terms are on at ``step`` (official ``adopt_weight``)."""
        return step >= self.cfg.disc_start and self.cfg.disc_factor > 0

    def kl_weight_at(self, step: int) -> float:
        """KL weight at ``step``: 0 before ``kl_start``, then a linear warm-up over ``kl_warmup`` steps."""
        c = self.cfg
        if step < c.kl_start:
            return 0.0
        if c.kl_warmup > 0 and step - c.kl_start < c.kl_warmup:
            return c.kl_weight * (step - c.kl_start) / c.kl_warmup
        return c.kl_weight

    def entropy_weight_at(self, step: int) -> float:
        """Annealed FSQ entropy weight at ``step``."""
        c = self.cfg
        return entropy_weight_at(
            step, c.entropy_weight, c.entropy_annealing_steps, c.entropy_annealing_factor
        )

    def _disc_input(self, x: Tensor) -> Tensor:
        return _frames(x) if self.cfg.disc_dim == "2d" else x

    # -------------------------------------------------------------- generator
    def generator_loss(
        self,
        x: Tensor,
        xrec: Tensor,
        logvar: Tensor,
        step: int,
        regularizer: str,
        reg_value: Tensor,
        last_layer: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Autoencoder loss and its terms (detached) for ``x``/``xrec`` (B, C, T, H, W).

        ``regularizer``: "kl" (``reg_value`` = KL divergence) or "fsq" (``reg_value`` = the FSQ aux loss
        already weighted by its entropy and commitment weights). ``last_layer``: the decoder's last weight
        for the adaptive GAN weight (None, or one without grad, gives the fixed ``disc_weight``).
        """
        c = self.cfg
        x = x.float()
        xrec = xrec.float()
        b, ch, t, h, w = x.shape
        n_frames, chw = b * t, ch * h * w
        l1 = (x - xrec).abs()
        l1_sum = l1.sum()
        if c.perceptual_weight > 0:
            assert self.perceptual is not None
            p = self.perceptual(_frames(x).contiguous(), _frames(xrec).contiguous()).float().reshape(-1)
            p_sum = p.sum()
        else:
            p_sum = x.new_zeros(())
        rec_sum = c.pixel_weight * l1_sum + c.perceptual_weight * chw * p_sum
        nll = rec_sum / torch.exp(logvar) / n_frames + logvar * chw
        loss = nll
        logs: dict[str, Tensor] = {
            "l1": (l1_sum / l1.numel()).detach(),
            "p_loss": (p_sum / n_frames).detach(),
            "rec_loss": (rec_sum / (n_frames * chw)).detach(),
            "nll": nll.detach(),
            "logvar": logvar.detach().reshape(()),
        }
        if regularizer == "kl":
            kl_w = self.kl_weight_at(step)
            loss = loss + kl_w * reg_value
            logs["kl"] = reg_value.detach()
            logs["kl_weight"] = torch.tensor(kl_w)
        else:
            loss = loss + reg_value
            logs["aux_loss"] = reg_value.detach()
        if self.disc_active(step):
            logits_fake = self.discriminator(self._disc_input(xrec)).float()
            g = (
                non_saturating_g_loss(logits_fake)
                if c.gen_loss == "non-saturating"
                else hinge_g_loss(logits_fake)
            )
            if last_layer is not None and last_layer.requires_grad and torch.is_grad_enabled():
                d_weight = adaptive_weight(nll, g, last_layer, c.disc_weight)
            else:
                d_weight = torch.tensor(c.disc_weight, device=x.device)
            loss = loss + d_weight * c.disc_factor * g
            logs["g_loss"] = g.detach()
            logs["d_weight"] = d_weight.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    # -------------------------------------------------------------- discriminator
    def discriminator_loss(
        self, x: Tensor, xrec: Tensor, step: int, disc: Callable[[Tensor], Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Discriminator loss on real ``x`` and (detached) ``xrec``; ``disc`` is the (DDP-wrapped) discriminator."""
        c = self.cfg
        disc = disc if disc is not None else self.discriminator
        real = disc(self._disc_input(x.detach().float()).contiguous()).float()
        fake = disc(self._disc_input(xrec.detach().float()).contiguous()).float()
        d = hinge_d_loss(real, fake) if c.disc_loss == "hinge" else vanilla_d_loss(real, fake)
        factor = c.disc_factor if self.disc_active(step) else 0.0
        logs = {"logits_real": real.detach().mean(), "logits_fake": fake.detach().mean()}
        if c.lecam_weight > 0:
            with torch.no_grad():
                means = self.all_reduce_mean(
                    torch.stack([real.detach().mean(), fake.detach().mean()]).float()
                )
                self.lecam_ema_real.mul_(c.lecam_decay).add_((1 - c.lecam_decay) * means[0])
                self.lecam_ema_fake.mul_(c.lecam_decay).add_((1 - c.lecam_decay) * means[1])
            reg = lecam_reg(real, fake, self.lecam_ema_real, self.lecam_ema_fake)
            loss = factor * (c.lecam_weight * reg + d)
            logs["lecam"] = reg.detach()
        else:
            loss = factor * d
        logs["d_loss"] = d.detach()
        logs["disc_loss"] = loss.detach()
        return loss, logs
