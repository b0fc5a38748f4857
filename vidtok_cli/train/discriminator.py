"""PatchGAN discriminators (2-D per frame and 3-D per clip), as the official VidTok training uses.

Layouts follow the official ``NLayerDiscriminator`` (pix2pix PatchGAN, kernel 4) and
``NLayerDiscriminator3D`` (kernel 3, the first middle layer also halves time), with BatchNorm and the
parameter names ``main.<i>.*``, so an official checkpoint's ``loss.discriminator.main.*`` tensors load
into them after stripping ``loss.discriminator.``. Initialisation as official: conv weights N(0, 0.02),
BatchNorm weights N(1, 0.02) and biases 0.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchDiscriminator2D", "PatchDiscriminator3D", "build_discriminator", "init_weights"]


def init_weights(m: nn.Module) -> None:
    """The official ``weights_init``: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(m, (nn.Conv2d, nn.Conv3d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.constant_(m.bias, 0.0)


class PatchDiscriminator2D(nn.Module):
    """2-D PatchGAN on frames (N, C, H, W) -> logits (N, 1, h, w); the official 2-D discriminator."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class PatchDiscriminator3D(nn.Module):
    """3-D PatchGAN on clips (B, C, T, H, W) -> logits (B, 1, t, h, w); the official 3-D discriminator."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, ndf, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv3d(
                    ndf * prev, ndf * mult, 3, stride=(2 if n == 1 else 1, 2, 2), padding=1, bias=False
                ),
                nn.BatchNorm3d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv3d(ndf * prev, ndf * mult, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm3d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv3d(ndf * mult, 1, 3, stride=1, padding=1),
        ]
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


def build_discriminator(
    kind: str = "2d", in_channels: int = 3, ndf: int = 64, n_layers: int = 3
) -> nn.Module:
    """A freshly initialised ``"2d"`` or ``"3d"`` PatchGAN discriminator."""
    if kind == "2d":
        d: nn.Module = PatchDiscriminator2D(in_channels, ndf, n_layers)
    elif kind == "3d":
        d = PatchDiscriminator3D(in_channels, ndf, n_layers)
    else:
        raise ValueError(f"discriminator kind must be '2d' or '3d', got {kind!r}")
    d.apply(init_weights)
    return d
