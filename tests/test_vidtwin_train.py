"""`vidtok train` on VidTwin: fine-tuning a tiny VidTwin with every loss term, and training one from a card."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import vidtok_cli
from vidtok_cli.errors import UsageError
from vidtok_cli.train.setup import Autoencoder
from vidtok_cli.train.trainer import train

from .helpers import step_records, tiny, tiny_vidtwin, tiny_vidtwin_config


def _perceptual(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A stand-in perceptual distance (N,) (the real LPIPS needs weights that are not offline)."""
    return (x - y).pow(2).flatten(1).mean(1)


def test_fine_tuning_uses_every_loss_term_and_saves_a_vidtwin(videos, tmp_path: Path):
    weights = tiny_vidtwin(tmp_path / "tiny.safetensors")
    out = tmp_path / "run"
    opts = dict(model=str(weights), frames=4, size=32, steps=3, disc_start=1, perceptual_weight=None)
    train(tiny(out, videos, None, **opts), perceptual=_perceptual)  # the official VidTwin loss weights
    recs = step_records(out)
    want = {"l1", "p_loss", "rec_loss", "kl", "kl_weight", "g_loss", "disc_loss", "grad_norm"}
    assert want <= set(recs[2]), want - set(recs[2])
    assert all(math.isfinite(recs[s][k]) for s in (2, 3) for k in want)
    assert recs[2]["kl_weight"] == pytest.approx(1e-3) and recs[2]["kl"] > 0 and recs[2]["p_loss"] > 0
    used = json.loads((out / "train_config.json").read_text())
    assert (used["perceptual_weight"], used["disc_weight"], used["lecam_weight"]) == (0.05, 0.05, 0.0)
    assert (used["kl_weight"], used["gen_loss"]) == (1e-3, "hinge")
    tuned = vidtok_cli.load_model(out / "final")
    base = vidtok_cli.load_model(weights)
    assert tuned.family == "vidtwin" and tuned.cfg == base.cfg
    assert not torch.equal(
        tuned.state_dict()["decoder.final_layer.linear.weight"],
        base.state_dict()["decoder.final_layer.linear.weight"],
    )
    assert tuned.module.encoder.pos_embed.dtype == torch.float64


def test_training_from_a_card_and_the_clip_checks(videos, tmp_path: Path):
    arch = "\n".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
        for k, v in tiny_vidtwin_config().to_dict().items()
    )
    card = tmp_path / "tiny-twin.toml"
    card.write_text(f'name = "tiny-twin"\nfamily = "vidtwin"\n[architecture]\n{arch}\n')
    out = tmp_path / "scratch"
    train(tiny(out, videos, card, frames=4, size=32, steps=2), perceptual=_perceptual)
    assert vidtok_cli.load_model(out / "final").family == "vidtwin"
    with pytest.raises(UsageError, match="exactly 4 frames"):
        train(tiny(tmp_path / "a", videos, card, frames=5, size=32))
    with pytest.raises(UsageError, match="32x32"):
        train(tiny(tmp_path / "b", videos, card, frames=4, size=16))


def test_training_kl_is_the_sum_of_the_three_official_kl_terms():
    torch.manual_seed(0)
    m = vidtok_cli.arch.vidtwin.build_model(tiny_vidtwin_config()).eval()
    x = torch.rand(2, 3, 4, 32, 32) * 2 - 1
    with torch.no_grad():
        rec, moments, _ = Autoencoder(m)(x, False, None, None, False)
        enc = m.encode(x)
        want = m.decode(enc.structure, enc.dynamics_x, enc.dynamics_y)
    mean, logvar = moments.chunk(2, dim=1)
    kl = (0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)).sum() / 2
    assert torch.allclose(kl, enc.kl_loss(), rtol=1e-5)
    assert torch.equal(rec, want)


def test_gradient_checkpointing_of_the_stt_blocks_gives_the_same_gradients():
    from vidtok_cli.train.setup import enable_gradient_checkpointing

    def grads(checkpointed: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        m = vidtok_cli.arch.vidtwin.build_model(tiny_vidtwin_config(depth=2))
        if checkpointed:
            assert enable_gradient_checkpointing(m) == 4  # 2 encoder + 2 decoder blocks
        x = torch.rand(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
        rec, moments, _ = Autoencoder(m)(x, False, None, None, False)
        (rec.square().mean() + moments.square().mean()).backward()
        return {k: p.grad for k, p in m.named_parameters() if p.grad is not None}

    a, b = grads(False), grads(True)
    assert a.keys() == b.keys() and len(a) > 100
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
